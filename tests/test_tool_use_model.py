"""The tool-use demo end to end on the real embedded model (vLLM on CPU), asserted on DuckDB rows."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from command import synthgraph
from test_tool_use_graph import TOOL_FAILURES_SQL

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model
def test_tool_use_demo_on_the_embedded_model_calls_real_tools_and_checks_every_call(tmp_path):
    db = tmp_path / "tools.duckdb"
    run = synthgraph("run", str(ROOT / "demos" / "tool_use.yaml"), "--limit", "3", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone() == (3,)
    # the grammar gets a 0.5B model calling tools: some assistant turn carries OpenAI tool_calls
    calls = con.execute("SELECT tool_calls FROM messages WHERE tool_calls IS NOT NULL").fetchall()
    assert calls, "no trajectory called a tool"
    # every call is answered by a tool turn with its id, right after the assistant turn that made it
    unanswered = con.execute("""
        SELECT count(*) FROM messages a, unnest(from_json(a.tool_calls, '["json"]')) AS t(c)
        WHERE NOT EXISTS (SELECT 1 FROM messages r WHERE r.sample_id = a.sample_id AND r.role = 'tool'
                          AND r.tool_call_id = (c->>'id') AND r.turn > a.turn)
    """).fetchone()[0]
    assert unanswered == 0
    # every trajectory that ran carries the format and execution stages; judged ones a critic verdict too
    unchecked = con.execute("""
        SELECT count(*) FROM samples s WHERE s.kind = 'tool_trajectory' AND s.status <> 'error'
        AND (SELECT count(*) FROM verdicts v WHERE v.sample_id = s.sample_id
             AND v.verifier IN ('format', 'execution', 'tool_choice')) < 3
    """).fetchone()[0]
    assert unchecked == 0
    accepted_unjudged = con.execute("""
        SELECT count(*) FROM samples s WHERE s.status = 'accepted'
        AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.sample_id = s.sample_id AND v.verifier = 'critic')
    """).fetchone()[0]
    assert accepted_unjudged == 0
    roles = dict(con.execute("SELECT role, min(completion_tokens) FROM agent_calls GROUP BY 1").fetchall())
    assert {"proposer", "solver"} <= roles.keys() and all(tokens > 0 for tokens in roles.values())
    con.close()

    failures = synthgraph("sql", TOOL_FAILURES_SQL, "--db", str(db), "--format", "json", cwd=tmp_path)
    assert failures.returncode == 0 and json.loads(failures.stdout)
    out = tmp_path / "all.sharegpt.jsonl"
    export = synthgraph("export", "--format", "sharegpt", "--status", "rejected", "--out", str(out), "--db", str(db),
                        cwd=tmp_path)
    assert export.returncode == 0, export.stdout + export.stderr
