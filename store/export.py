"""Export samples as chat records: OpenAI `messages` plus metadata columns, as JSONL or Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from synthgraph.store.db import connect

# `from_json` turns the view's JSON messages into a typed list, so Parquet readers (datasets, pandas) get
# a list of structs rather than a string to parse.
_SELECT = """
SELECT sample_id, run_id, seed_id, group_id, kind, status, score, reason, payload AS metadata,
       from_json(messages, '[{"role": "VARCHAR", "content": "VARCHAR", "tool_calls": "JSON",
                              "tool_call_id": "VARCHAR", "name": "VARCHAR"}]') AS messages
FROM chat_samples
WHERE ($status IS NULL OR status = $status) AND ($run_id IS NULL OR run_id = $run_id)
ORDER BY run_id, group_id, sample_id
"""


def export_samples(db: Path, out: Path, *, format: Literal["jsonl", "parquet"], status: str | None = "accepted",
                   run_id: str | None = None) -> int:
    """Write the matching samples to `out`; returns how many were written."""
    con = connect(Path(db), read_only=True)
    try:
        params = {"status": status, "run_id": run_id}
        out.parent.mkdir(parents=True, exist_ok=True)
        if format == "parquet":
            con.execute(f"COPY ({_SELECT}) TO '{_quote(out)}' (FORMAT parquet)", params)
            return con.execute(f"SELECT count(*) FROM ({_SELECT})", params).fetchone()[0]
        cursor = con.execute(_SELECT, params)
        columns = [d[0] for d in cursor.description]
        count = 0
        with out.open("w") as fh:
            for row in cursor.fetchall():
                record = dict(zip(columns, row))
                record["metadata"] = json.loads(record["metadata"])
                record["messages"] = [_chat_turn(m) for m in record["messages"]]
                fh.write(json.dumps({"messages": record.pop("messages"), **record}, ensure_ascii=False) + "\n")
                count += 1
        return count
    finally:
        con.close()


def _chat_turn(message: dict) -> dict:
    """Drop the keys a turn does not use, so records read like OpenAI's own."""
    turn = {"role": message["role"], "content": message["content"]}
    if message.get("tool_calls") is not None:
        turn["tool_calls"] = json.loads(message["tool_calls"])
    if message["role"] == "tool":
        turn["tool_call_id"] = message.get("tool_call_id")
        turn["name"] = message.get("name")
    return turn


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
