"""Export samples as chat records: OpenAI `messages` (+ `tools`) with metadata as JSONL or Parquet, or ShareGPT;
preference pairs as TRL's conversational DPO (`prompt`, `chosen`, `rejected`) or KTO (`prompt`, `completion`,
`label`) records; any of them as a `datasets` folder with a dataset card (store/card.py).

A sample that offered tools keeps their OpenAI specs in `payload.tools`; exports lift them to a top-level
`tools` field, because that is where fine-tuning frameworks look for them. Tool-call `arguments` are exported as
JSON objects, not the JSON strings of OpenAI's wire format: chat templates (Qwen2.5's `tool_call.arguments | tojson`)
would otherwise render them encoded twice.
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

from synthgraph.store.db import StoreError, connect, is_store_file, unknown_run

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

# Samples a chat export cannot hold: they have no turns (a crashed or contaminated seed, a problem that failed).
_WITHOUT_TURNS = """
SELECT count(*) FROM samples
WHERE ($status IS NULL OR status = $status) AND ($run_id IS NULL OR run_id = $run_id)
  AND NOT ($exclude_flagged AND sample_id IN (%s))
  AND sample_id NOT IN (SELECT sample_id FROM messages)
""" % FLAGGED_SAMPLES

ExportFormat = Literal["jsonl", "parquet", "sharegpt"]
PairFormat = Literal["dpo", "kto"]


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
    params = {"status": status, "run_id": run_id, "exclude_flagged": exclude_flagged}
    try:
        count = _write(con, partial, format, params, notice)
        os.replace(partial, out)
        _say_left_out(con, params, notice)
        return count
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except duckdb.Error as exc:  # COPY ... TO for Parquet writes through DuckDB's own file system
        raise StoreError(f"cannot write {out}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
        with contextlib.suppress(OSError):
            partial.unlink()


def _say_left_out(con: duckdb.DuckDBPyConnection, params: dict[str, Any],
                  notice: Callable[[str], None] | None) -> None:
    (left_out,) = con.execute(_WITHOUT_TURNS, params).fetchone()
    if left_out and notice is not None:
        what = f"{params['status']} samples" if params["status"] else "samples"
        notice(f"{left_out} {what} have no chat turns (crashed or contaminated seeds, "
               "problems that failed) and are left out; they are in the store: synthgraph sql \"SELECT "
               "kind, status, reason FROM samples WHERE sample_id NOT IN (SELECT sample_id FROM messages)\"")


def check_destination(db: Path, out: Path, *, force: bool) -> None:
    """Refuse an export destination that would destroy something, or that cannot be written, in one line."""
    if is_store_file(db, out):
        raise StoreError(f"--out {out} is the store itself (or its WAL, snapshot or checkpoints): exporting onto it "
                         "would destroy it; choose another file")
    if out.is_dir():
        raise StoreError(f"--out {out} is a folder: give a file name, e.g. {out / 'samples.jsonl'}")
    if not out.parent.is_dir():
        raise StoreError(f"the folder {out.parent} does not exist: create it first (mkdir -p {out.parent})")
    if out.exists() and not out.is_file():
        raise StoreError(f"--out {out} exists and is not a regular file: choose another file")
    if out.exists() and not force:
        raise StoreError(f"{out} already exists: pass --force to replace it, or choose another --out")


def _write(con: duckdb.DuckDBPyConnection, path: Path, format: ExportFormat, params: dict[str, Any],
           notice: Callable[[str], None] | None = None) -> int:
    if format == "parquet":  # through `datasets`, so tool calls are typed structs with arguments as objects
        records = chat_records(con, **params)
        to_dataset(records, "chat").to_parquet(str(path))
        return len(records)
    cursor = con.execute(_SELECT, params)
    columns = [d[0] for d in cursor.description]
    count = unplaced = 0
    with path.open("w") as fh:
        for row in cursor.fetchall():
            record = dict(zip(columns, row))
            record["metadata"] = json.loads(record["metadata"])
            messages = [_chat_turn(m) for m in record.pop("messages")]
            tools = record["metadata"].get("tools")
            if format == "sharegpt":
                # ShareGPT's function_call turn holds the calls alone, and a gpt turn before it would break the
                # human/gpt alternation its readers check: text said with a call has no place there.
                unplaced += sum(bool(m.get("tool_calls") and (m["content"] or "").strip()) for m in messages)
                # one flat metadata object: the sample's payload, then its columns (which win on a clash)
                payload = {k: v for k, v in record.pop("metadata").items() if k != "tools"}
                line = {**sharegpt_record(messages, tools), "metadata": {**payload, **record}}
            else:
                line = {"messages": messages, **({"tools": tools} if tools else {}), **record}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
        fh.flush()
        os.fsync(fh.fileno())
    if unplaced and notice is not None:
        notice(f"{unplaced} assistant turns said something beside their tool calls; ShareGPT's function_call turn "
               "has no place for the words, so they are not in this file (jsonl and parquet keep them)")
    return count


def samples_table(db: Path, *, status: str | None = "accepted", run_id: str | None = None,
                  exclude_flagged: bool = False, notice: Callable[[str], None] | None = None) -> pyarrow.Table:
    """The matching samples as an Arrow table (messages as a list of turns, metadata as JSON text), for the
    Python API's DataFrame / Dataset views. `notice` hears of samples left out for having no turns. Raises
    StoreError for a `run_id` the store does not hold."""
    con = connect(Path(db), read_only=True)
    try:
        known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()]
        if (problem := unknown_run(run_id, known, where=str(db))) is not None:
            raise StoreError(problem)
        params = {"status": status, "run_id": run_id, "exclude_flagged": exclude_flagged}
        _say_left_out(con, params, notice)
        return con.execute(_SELECT, params).fetch_arrow_table()
    finally:
        con.close()


def _chat_turn(message: dict) -> dict:
    """Drop the keys a turn does not use, so records read like OpenAI's own."""
    turn = {"role": message["role"], "content": message["content"]}
    if message.get("tool_calls") is not None:
        calls = message["tool_calls"]
        turn["tool_calls"] = tool_calls_with_object_arguments(json.loads(calls) if isinstance(calls, str) else calls)
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
                calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                         for c in tool_calls_with_object_arguments(message["tool_calls"])]
                value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
                record["conversations"].append({"from": "function_call", "value": value})
            else:
                record["conversations"].append({"from": _SHAREGPT_FROM[role], "value": message["content"] or ""})
    if tools:
        record["tools"] = json.dumps([t.get("function", t) for t in tools], ensure_ascii=False)
    return record


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def tool_calls_with_object_arguments(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool calls with each `function.arguments` parsed from its JSON string to the object it encodes (a
    string that is not JSON stays as it is: it is what the model wrote)."""
    parsed = []
    for call in calls:
        function = dict(call.get("function") or {})
        if isinstance(function.get("arguments"), str):
            try:
                function["arguments"] = json.loads(function["arguments"])
            except json.JSONDecodeError:
                pass
        parsed.append({**call, "function": function})
    return parsed


def chat_records(con, *, status: str | None, run_id: str | None, exclude_flagged: bool = False
                 ) -> list[dict[str, Any]]:
    """The matching samples as chat records: `messages`, `tools`, and the sample's columns with its payload as
    `metadata`."""
    cursor = con.execute(_SELECT, {"status": status, "run_id": run_id, "exclude_flagged": exclude_flagged})
    columns = [d[0] for d in cursor.description]
    records = []
    for row in cursor.fetchall():
        record = dict(zip(columns, row))
        record["metadata"] = json.loads(record["metadata"])
        record["messages"] = [_chat_turn(m) for m in record["messages"]]
        record["tools"] = record["metadata"].get("tools")
        records.append(record)
    return records


def pair_records(db: Path, format: PairFormat, *, run_id: str | None = None, source: str | None = None,
                 exclude_flagged: bool = False) -> list[dict[str, Any]]:
    """TRL's conversational preference records (dpo: `prompt`, `chosen`, `rejected`) or unpaired preference records
    (kto: `prompt`, `completion`, `label`), with `tools` where the prompt offered them and the pair's metadata.

    KTO needs no pairs, but the pairs are what the store has judged: each sample that takes part in a pair is one KTO
    record, once, labelled true if it is a chosen one and false if a rejected one.
    """
    from synthgraph.store.pairs import load_pairs

    def turns(messages: list[dict]) -> list[dict]:
        return [_chat_turn(m) for m in messages]

    records = []
    seen: set[str] = set()
    for pair in load_pairs(db, run_id=run_id, source=source, exclude_flagged=exclude_flagged):
        meta = {"source": pair["source"], "run_id": pair["run_id"], "group_id": pair["group_id"]}
        if format == "dpo":
            records.append({"prompt": turns(pair["prompt"]), "chosen": turns(pair["chosen"]),
                            "rejected": turns(pair["rejected"]), "tools": pair["tools"], **meta,
                            "margin": pair["margin"], "reason": pair["reason"],
                            "chosen_sample_id": pair["chosen_sample_id"],
                            "rejected_sample_id": pair["rejected_sample_id"]})
            continue
        for side, label in (("chosen", True), ("rejected", False)):
            sample_id = pair[f"{side}_sample_id"]
            if sample_id in seen:
                continue
            seen.add(sample_id)
            records.append({"prompt": turns(pair["prompt"]), "completion": turns(pair[side]), "label": label,
                            "tools": pair["tools"], **meta, "sample_id": sample_id,
                            "reason": None if label else pair["reason"]})
    return records


def export_pairs(db: Path, out: Path, *, format: PairFormat, run_id: str | None = None,
                 source: str | None = None, exclude_flagged: bool = False, force: bool = False) -> int:
    """Write the store's preference pairs as DPO or KTO JSON lines; returns how many records were written. The
    same care as `export_samples`: never onto the store or an existing file (without `force`), never half a file.
    `exclude_flagged` leaves out the pairs with a side that dedup or decontamination flagged."""
    db, out = Path(db), Path(out)
    check_destination(db, out, force=force)
    records = pair_records(db, format, run_id=run_id, source=source, exclude_flagged=exclude_flagged)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with partial.open("w") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, out)
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return len(records)


# ------------------------------------------------------------------------------------------ datasets features

def _features(records: str):
    """`datasets` features per record kind. Messages are typed structs, so Parquet and Arrow readers get columns,
    not strings to parse; tool-call arguments and tool specs differ from one tool to the next, so they are `Json`
    values (stored as JSON text, decoded back to objects by `datasets`)."""
    from datasets import Features, Json, List, Value

    call = {"id": Value("string"), "type": Value("string"),
            "function": {"name": Value("string"), "arguments": Json()}}
    turns = List({"role": Value("string"), "content": Value("string"), "tool_calls": List(call),
                  "tool_call_id": Value("string"), "name": Value("string")})
    text = Value("string")
    if records == "chat":
        return Features({"messages": turns, "tools": List(Json()), "sample_id": text, "run_id": text,
                         "seed_id": text, "group_id": text, "kind": text, "status": text, "score": Value("float64"),
                         "reason": text, "metadata": Json()})
    pair_meta = {"tools": List(Json()), "source": text, "run_id": text, "group_id": text, "reason": text}
    if records == "dpo":
        return Features({"prompt": turns, "chosen": turns, "rejected": turns, **pair_meta, "margin": Value("float64"),
                         "chosen_sample_id": text, "rejected_sample_id": text})
    return Features({"prompt": turns, "completion": turns, "label": Value("bool"), **pair_meta, "sample_id": text})


def _typed_turn(message: dict[str, Any]) -> dict[str, Any]:
    """A turn with every field of the typed message struct. A turn without calls gets an empty list, not null:
    pyarrow (26) cannot build a null of a type holding `Json`, and chat templates read `[]` as no calls."""
    return {"role": message["role"], "content": message.get("content"), "tool_calls": message.get("tool_calls") or [],
            "tool_call_id": message.get("tool_call_id"), "name": message.get("name")}


def to_dataset(records: list[dict[str, Any]], kind: str):
    """The records as a `datasets.Dataset` with the typed features of their kind."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()  # a CLI export prints one line, not bars per step
    features = _features(kind)
    rows = []
    for record in records:
        row = {name: record.get(name) for name in features}
        for column in _TURN_COLUMNS:
            if column in row:
                row[column] = [_typed_turn(m) for m in row[column]]
        row["tools"] = row["tools"] or []
        rows.append(row)
    # column-wise: from_list cannot take an empty export (it reads the columns off the first row)
    return Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)


_TURN_COLUMNS = ("messages", "prompt", "chosen", "rejected", "completion")
HfRecords = Literal["chat", "dpo", "kto"]


def export_hf(db: Path, out_dir: Path, *, records: HfRecords = "chat", status: str | None = "accepted",
              run_id: str | None = None, source: str | None = None, exclude_flagged: bool = False,
              license: str = "other", notice: Callable[[str], None] | None = None):
    """A `datasets` folder (`save_to_disk`) of chat, DPO or KTO records with a dataset card as its README.md;
    returns (the dataset, the card text). `exclude_flagged` leaves out the samples (the pairs with a side) that
    dedup or decontamination flagged."""
    from synthgraph.store.card import dataset_card

    if records == "chat":
        con = connect(Path(db), read_only=True)
        try:
            rows = chat_records(con, status=status, run_id=run_id, exclude_flagged=exclude_flagged)
            _say_left_out(con, {"status": status, "run_id": run_id, "exclude_flagged": exclude_flagged}, notice)
        finally:
            con.close()
    else:
        rows = pair_records(db, records, run_id=run_id, source=source, exclude_flagged=exclude_flagged)
    if not rows:  # `datasets` saves an empty dataset as a folder it cannot load back
        what = {"chat": f"{status or 'any'} samples", "dpo": "preference pairs", "kto": "preference pairs"}[records]
        raise StoreError(f"nothing to export: no {what}" + (f" in run {run_id}" if run_id else "") +
                         " (synthgraph stats / synthgraph pairs show what the store has)")
    dataset = to_dataset(rows, records)
    dataset.save_to_disk(str(out_dir))
    card = dataset_card(db, records=records, rows=rows, run_id=run_id, status=status, license=license,
                        features=list(dataset.features))
    (out_dir / "README.md").write_text(card)
    return dataset, card
