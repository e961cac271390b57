"""Export samples as chat records: OpenAI `messages` (+ `tools`) with metadata as JSONL or Parquet, or ShareGPT.

A sample that offered tools keeps their OpenAI specs in `payload.tools`; exports lift them to a top-level
`tools` field, because that is where fine-tuning frameworks look for them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from synthgraph.store.cleaning import FLAGGED_SAMPLES
import duckdb

from synthgraph.store.db import StoreError, connect, snapshot_path

if TYPE_CHECKING:
    import pyarrow

# `from_json` turns the view's JSON messages into a typed list, so Parquet readers (datasets, pandas) get
# a list of structs rather than a string to parse.
_SELECT = """
SELECT sample_id, run_id, seed_id, group_id, kind, status, score, reason, payload AS metadata,
       from_json(messages, '[{"role": "VARCHAR", "content": "VARCHAR", "tool_calls": "JSON",
                              "tool_call_id": "VARCHAR", "name": "VARCHAR"}]') AS messages
FROM chat_samples
WHERE ($status IS NULL OR status = $status) AND ($run_id IS NULL OR run_id = $run_id)
  AND NOT ($exclude_flagged AND sample_id IN (%s))
ORDER BY run_id, group_id, sample_id
""" % FLAGGED_SAMPLES

ExportFormat = Literal["jsonl", "parquet", "sharegpt"]


def export_samples(db: Path, out: Path, *, format: ExportFormat, status: str | None = "accepted",
                   run_id: str | None = None, exclude_flagged: bool = False, force: bool = False,
                   notice: Callable[[str], None] | None = None) -> int:
    """Write the matching samples to `out`; returns how many were written. `exclude_flagged` leaves out samples
    with a failed dedup / decontamination verdict (store/cleaning.py).

    Nothing the user has is lost: `out` may not be the store (or its WAL or snapshot), an existing file is
    replaced only with `force`, and the records go to a temporary file beside `out` that is renamed over it
    only when complete, so a failure (full disk, a killed process) leaves `out` as it was."""
    db, out = Path(db), Path(out)
    check_destination(db, out, force=force)
    con = connect(db, read_only=True, notice=notice)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        count = _write(con, partial, format, {"status": status, "run_id": run_id, "exclude_flagged": exclude_flagged})
        os.replace(partial, out)
        return count
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except duckdb.Error as exc:  # COPY ... TO for Parquet writes through DuckDB's own file system
        raise StoreError(f"cannot write {out}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
        with contextlib.suppress(OSError):
            partial.unlink()


def check_destination(db: Path, out: Path, *, force: bool) -> None:
    """Refuse an export destination that would destroy something, or that cannot be written, in one line."""
    store_files = [db, Path(f"{db}.wal"), snapshot_path(db)]
    if any(out.resolve() == f.resolve() or (out.exists() and f.exists() and os.path.samefile(out, f))
           for f in store_files):
        raise StoreError(f"--out {out} is the store itself (or its WAL or snapshot): exporting onto it would "
                         "destroy it; choose another file")
    if out.is_dir():
        raise StoreError(f"--out {out} is a folder: give a file name, e.g. {out / 'samples.jsonl'}")
    if not out.parent.is_dir():
        raise StoreError(f"the folder {out.parent} does not exist: create it first (mkdir -p {out.parent})")
    if out.exists() and not out.is_file():
        raise StoreError(f"--out {out} exists and is not a regular file: choose another file")
    if out.exists() and not force:
        raise StoreError(f"{out} already exists: pass --force to replace it, or choose another --out")


def _write(con: duckdb.DuckDBPyConnection, path: Path, format: ExportFormat, params: dict[str, Any]) -> int:
    if format == "parquet":
        select = f"SELECT *, metadata->'tools' AS tools FROM ({_SELECT})"
        con.execute(f"COPY ({select}) TO '{_quote(path)}' (FORMAT parquet)", params)
        return con.execute(f"SELECT count(*) FROM ({_SELECT})", params).fetchone()[0]
    cursor = con.execute(_SELECT, params)
    columns = [d[0] for d in cursor.description]
    count = 0
    with path.open("w") as fh:
        for row in cursor.fetchall():
            record = dict(zip(columns, row))
            record["metadata"] = json.loads(record["metadata"])
            messages = [_chat_turn(m) for m in record.pop("messages")]
            tools = record["metadata"].get("tools")
            if format == "sharegpt":
                line = {**sharegpt_record(messages, tools), "metadata": record}
            else:
                line = {"messages": messages, **({"tools": tools} if tools else {}), **record}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
        fh.flush()
        os.fsync(fh.fileno())
    return count


def samples_table(db: Path, *, status: str | None = "accepted", run_id: str | None = None,
                  exclude_flagged: bool = False) -> pyarrow.Table:
    """The matching samples as an Arrow table (messages as a list of turns, metadata as JSON text), for the
    Python API's DataFrame / Dataset views."""
    con = connect(Path(db), read_only=True)
    try:
        params = {"status": status, "run_id": run_id, "exclude_flagged": exclude_flagged}
        return con.execute(_SELECT, params).fetch_arrow_table()
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


_SHAREGPT_FROM = {"user": "human", "assistant": "gpt"}


def sharegpt_record(messages: list[dict[str, Any]], tools: list[dict] | None = None) -> dict[str, Any]:
    """OpenAI turns in the ShareGPT layout LLaMA-Factory reads: `conversations` of human / gpt / function_call /
    observation turns, the system prompt apart, and the tools as a JSON string. The results of parallel calls
    answer one function_call turn, so consecutive tool turns become one observation holding a list."""
    record: dict[str, Any] = {"conversations": []}
    for role, group in groupby(messages, key=lambda m: m["role"]):
        group = list(group)
        if role == "tool":
            results = [m["content"] for m in group]
            value = results[0] if len(results) == 1 else json.dumps(results, ensure_ascii=False)
            record["conversations"].append({"from": "observation", "value": value})
            continue
        for message in group:
            if role == "system":
                record["system"] = message["content"]
            elif message.get("tool_calls"):
                calls = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                         for c in message["tool_calls"]]
                value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
                record["conversations"].append({"from": "function_call", "value": value})
            else:
                record["conversations"].append({"from": _SHAREGPT_FROM[role], "value": message["content"] or ""})
    if tools:
        record["tools"] = json.dumps([t.get("function", t) for t in tools], ensure_ascii=False)
    return record


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
