"""Preference pairs read from the store's `preference_pairs` view (store/schema.sql says how pairs are made)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from synthgraph.store.cleaning import FLAGGED_SAMPLES
from synthgraph.store.db import StoreError, connect

PAIR_SOURCES = ("verified", "judged", "critique_revision")

_COUNTS = """
SELECT source, count(*) AS pairs, count(DISTINCT group_id) AS prompts,
       count(DISTINCT chosen_sample_id) AS chosen, round(avg(margin), 2) AS mean_margin,
       round(min(margin), 2) AS min_margin
FROM preference_pairs WHERE $run_id IS NULL OR run_id = $run_id
GROUP BY source ORDER BY source
"""

_PAIRS = """
SELECT run_id, group_id, source, prompt, chosen, rejected, margin, chosen_sample_id, rejected_sample_id, reason,
       tools
FROM preference_pairs
WHERE ($run_id IS NULL OR run_id = $run_id) AND ($source IS NULL OR source = $source)
  AND NOT ($exclude_flagged AND (chosen_sample_id IN (%(flagged)s) OR rejected_sample_id IN (%(flagged)s)))
ORDER BY run_id, group_id, chosen_sample_id, rejected_sample_id
""" % {"flagged": FLAGGED_SAMPLES}


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    try:
        return con.execute(sql, params)
    except duckdb.CatalogException as exc:
        if "preference_pairs" not in str(exc):
            raise
        raise StoreError("this store was made by an older synthgraph and has no preference_pairs view yet: "
                         "any run against it (or `synthgraph sql --write \"SELECT 1\"`) adds it") from exc


def pair_counts(db: Path, *, run_id: str | None = None) -> tuple[list[str], list[tuple]]:
    """(columns, one row per source that has pairs)."""
    con = connect(Path(db), read_only=True)
    try:
        cursor = _run(con, _COUNTS, {"run_id": run_id})
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        con.close()


def load_pairs(db: Path, *, run_id: str | None = None, source: str | None = None,
               exclude_flagged: bool = False) -> list[dict[str, Any]]:
    """Every pair as a dict with `prompt`, `chosen`, `rejected` (OpenAI message lists, tool-call arguments still
    as the JSON strings OpenAI uses) and the pair's metadata. `exclude_flagged` leaves out the pairs with a side
    that dedup or decontamination flagged."""
    con = connect(Path(db), read_only=True)
    try:
        cursor = _run(con, _PAIRS, {"run_id": run_id, "source": source, "exclude_flagged": exclude_flagged})
        columns = [d[0] for d in cursor.description]
        pairs = []
        for row in cursor.fetchall():
            pair = dict(zip(columns, row))
            for key in ("prompt", "chosen", "rejected", "tools"):
                pair[key] = json.loads(pair[key]) if pair[key] is not None else None
            pairs.append(pair)
        return pairs
    finally:
        con.close()
