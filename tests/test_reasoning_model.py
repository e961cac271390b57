"""Tool-integrated reasoning on the real embedded model (vLLM on CPU): the gold recipe, asserted on DuckDB rows."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from command import synthgraph

from synthgraph.tools.math_answers import answers_match

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model
def test_tir_traces_run_code_in_the_sandbox_and_accept_only_gold_answers(tmp_path):
    db = tmp_path / "gold.duckdb"
    run = synthgraph("run", str(ROOT / "demos" / "reasoning_gold.yaml"), "--limit", "3", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr

    con = duckdb.connect(str(db), read_only=True)
    traces = con.execute("SELECT count(*) FROM samples WHERE kind = 'reasoning_trace' AND (payload->>'mode') = 'tir'"
                         ).fetchone()[0]
    assert traces >= 3
    # the solver wrote code that ran: python tool calls, each answered by a tool turn with its id
    calls = con.execute("""
        SELECT a.sample_id, c->'function'->>'name', c->>'id' FROM messages a,
               unnest(from_json(a.tool_calls, '["json"]')) AS t(c) WHERE a.tool_calls IS NOT NULL""").fetchall()
    assert calls and {name for _, name, _ in calls} == {"python"}
    answered = con.execute("SELECT count(*) FROM messages WHERE role = 'tool' AND name = 'python'").fetchone()[0]
    assert answered == len(calls)
    # 0 false accepts: every accepted trace's final answer is the gold answer
    accepted = con.execute("""
        SELECT s.payload->>'final_answer', d.payload->>'answer' FROM samples s JOIN seeds d USING (run_id, seed_id)
        WHERE s.status = 'accepted'""").fetchall()
    assert all(answers_match(f"#### {final}", gold) for final, gold in accepted), accepted
    con.close()

    # accepted TIR traces export as tool-use chat data: the python tool's spec on top, tool turns inside
    out = tmp_path / "tir.jsonl"
    export = synthgraph("export", "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert export.returncode == 0, export.stdout + export.stderr
    for record in map(json.loads, out.read_text().splitlines()):
        if any(m["role"] == "tool" for m in record["messages"]):
            assert [t["function"]["name"] for t in record["tools"]] == ["python"]
