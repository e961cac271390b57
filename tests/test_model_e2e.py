"""The README's demo, end to end on the real embedded model (vLLM on CPU), asserted on DuckDB rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest
from command import synthgraph

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The two commands the README opens with."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [blocks[0].strip(), blocks[1].strip()]


def test_readme_opens_with_setup_plus_demo_and_the_test_command():
    setup_and_demo, tests = readme_commands()
    assert setup_and_demo == "./setup.sh && .venv/bin/synthgraph run demos/reasoning.yaml --limit 8"
    assert tests == ".venv/bin/python -m pytest"
    assert ".venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.model
def test_readme_demo_on_the_embedded_model_fills_duckdb_with_verified_traces(tmp_path):
    demo = readme_commands()[0].split("&&")[1].split()
    assert demo[1:3] == ["run", "demos/reasoning.yaml"]
    db = tmp_path / "demo.duckdb"
    # The README's command with fewer seeds, so CI on two cores stays within minutes.
    run = synthgraph("run", str(ROOT / "demos" / "reasoning.yaml"), "--limit", "2", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "accepted" in run.stdout and str(db) in run.stdout.replace("\n", "")
    assert "report: synthgraph report --run " in run.stdout  # the command that writes the run's report

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone() == (2,)
    # the proposer's structured output parsed (a problem exists) for at least one seed
    problems = con.execute("SELECT count(DISTINCT seed_id) FROM samples WHERE (payload->>'problem') IS NOT NULL"
                           ).fetchone()[0]
    assert problems >= 1
    # every trace carries a math-verify verdict; every verified one a critic verdict, unless its problem's
    # reference failed validation: such a seed is rejected before the critic, its traces as unvalidated_reference
    traces = con.execute("SELECT count(*) FROM samples WHERE kind = 'reasoning_trace' AND status <> 'error'"
                         ).fetchone()[0]
    checked = con.execute("SELECT count(*) FROM verdicts WHERE verifier = 'math_verify'").fetchone()[0]
    assert checked == traces
    unjudged = con.execute("""
        SELECT count(*) FROM verdicts m JOIN samples s USING (sample_id)
        WHERE m.verifier = 'math_verify' AND m.outcome = 'passed'
        AND NOT EXISTS (SELECT 1 FROM verdicts c WHERE c.sample_id = m.sample_id AND c.verifier = 'critic')
        AND NOT (s.status = 'rejected' AND s.reason LIKE 'unvalidated_reference:%' AND EXISTS (
            SELECT 1 FROM verdicts r JOIN samples p USING (sample_id)
            WHERE p.seed_id = s.seed_id AND r.verifier = 'reference_validation' AND r.outcome = 'failed'))
    """).fetchone()[0]
    assert unjudged == 0
    # lineage: real token counts from the engine for every role that ran
    roles = dict(con.execute("SELECT role, min(completion_tokens) FROM agent_calls GROUP BY 1").fetchall())
    assert "proposer" in roles and all(tokens > 0 for tokens in roles.values())
    con.close()

    stats = synthgraph("stats", "--db", str(db), cwd=tmp_path)
    assert stats.returncode == 0 and "proposer" in stats.stdout
    out = tmp_path / "all.jsonl"
    export = synthgraph("export", "--status", "rejected", "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert export.returncode == 0
    sql = synthgraph("sql", "SELECT status, count(*) AS n FROM samples GROUP BY 1", "--db", str(db),
                     "--format", "json", cwd=tmp_path)
    counts = {row["status"]: row["n"] for row in json.loads(sql.stdout)}
    assert sum(counts.values()) >= 2
    report = synthgraph("report", "--db", str(db), "--out", str(tmp_path / "report.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    assert f"{sum(counts.values())} samples" in report.stdout
