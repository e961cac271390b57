"""The dialogue demo on the real embedded model (vLLM on CPU), asserted on DuckDB rows, not on wording."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from command import synthgraph
from test_dialogue_graph import GAVE_UP_SQL, SCORE_BY_PERSONA_AND_TURN_SQL

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model
def test_dialogue_demo_on_the_embedded_model_writes_judged_multi_turn_dialogues(tmp_path):
    db = tmp_path / "dialogue.duckdb"
    run = synthgraph("run", str(ROOT / "demos" / "dialogue.yaml"), "--limit", "3", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone() == (3,)
    samples = con.execute("""
        SELECT sample_id, status, reason, CAST(payload->>'user_turns' AS INTEGER), payload->>'end_reason'
        FROM samples WHERE kind = 'dialogue'""").fetchall()
    assert len(samples) == 3 and all(reason for _, status, reason, _, _ in samples if status != "accepted")
    # A role that gave no usable output three times makes an error sample (1 dialogue in 6 on this model); the
    # others ran to an end. Three seeds, so that all of them erring is not a 1-in-36 chance as with two.
    finished = [s for s in samples if s[1] != "error"]
    assert finished, samples
    for sample_id, _, _, user_turns, end_reason in finished:
        assert user_turns >= 3 and end_reason in ("goal_met", "gave_up", "turn_budget")
        roles = [r for (r,) in con.execute("SELECT role FROM messages WHERE sample_id = ? ORDER BY turn",
                                           [sample_id]).fetchall()]
        assert roles[0] == "system" and roles.count("user") == user_turns
        judged = {t for (t,) in con.execute("SELECT turn FROM verdicts WHERE sample_id = ? AND verifier = "
                                            "'turn_critic'", [sample_id]).fetchall()}
        assert judged == {i for i, role in enumerate(roles) if role == "assistant"}
        whole = {v for (v,) in con.execute("SELECT verifier FROM verdicts WHERE sample_id = ? AND turn IS NULL",
                                           [sample_id]).fetchall()}
        assert whole == {"dialogue_critic", "checks"}
    # lineage: every role ran, with real token counts from the engine
    tokens = dict(con.execute("SELECT role, min(completion_tokens) FROM agent_calls GROUP BY 1").fetchall())
    assert set(tokens) == {"user", "assistant", "critic"} and all(t > 0 for t in tokens.values())
    con.close()

    for statement in (SCORE_BY_PERSONA_AND_TURN_SQL, GAVE_UP_SQL):
        sql = synthgraph("sql", statement, "--db", str(db), "--format", "json", cwd=tmp_path)
        assert sql.returncode == 0, sql.stdout + sql.stderr
        json.loads(sql.stdout)
