"""The judged-pairs demo on the real embedded model (vLLM on CPU), asserted on DuckDB rows, not on wording."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from command import synthgraph

ROOT = Path(__file__).resolve().parents[1]
ASPECTS = {"judge_helpfulness", "judge_honesty", "judge_instruction_following", "judge_truthfulness"}


@pytest.mark.model
def test_judged_pairs_demo_rates_every_response_and_pairs_only_past_the_margin(tmp_path):
    db = tmp_path / "judged.duckdb"
    run = synthgraph("run", str(ROOT / "demos" / "judged_pairs.yaml"), "--limit", "3", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone() == (3,)
    # four responses per instruction (two responders x two samples), each its own sample in the seed's group
    assert con.execute("SELECT count(*), count(DISTINCT group_id) FROM samples WHERE kind = 'judged_response'"
                       ).fetchone() == (12, 3)
    rated = con.execute("SELECT sample_id, score FROM samples WHERE score IS NOT NULL").fetchall()
    assert rated, "the judge rated no response"
    for sample_id, score in rated:
        verdicts = dict(con.execute("SELECT verifier, score FROM verdicts WHERE sample_id = ?", [sample_id]).fetchall())
        assert set(verdicts) == ASPECTS and all(1 <= s <= 5 for s in verdicts.values())
        assert score == pytest.approx(sum(verdicts.values()) / 4, abs=1e-3)
    # at most one chosen response per instruction: the best rated of its group among those failing no aspect
    failing = {sid for (sid,) in con.execute("SELECT DISTINCT sample_id FROM verdicts WHERE outcome = 'failed'"
                                             ).fetchall()}
    groups: dict[str, list[tuple]] = {}
    for group_id, sample_id, status, score in con.execute("SELECT group_id, sample_id, status, score FROM samples"
                                                          ).fetchall():
        groups.setdefault(group_id, []).append((sample_id, status, score))
    for group_id, members in groups.items():
        chosen = [(sid, score) for sid, status, score in members if status == "accepted"]
        eligible = [score for sid, _, score in members if score is not None and sid not in failing]
        assert len(chosen) <= 1, group_id
        assert not chosen or (chosen[0][0] not in failing and chosen[0][1] == max(eligible)), group_id
    # every pair clears the recipe's margin (0.75) and pairs a chosen response with a rejected sibling
    for margin, chosen_status, rejected_status in con.execute("""
            SELECT p.margin, c.status, r.status FROM preference_pairs p
            JOIN samples c ON c.sample_id = p.chosen_sample_id JOIN samples r ON r.sample_id = p.rejected_sample_id
            """).fetchall():
        assert margin >= 0.75 and (chosen_status, rejected_status) == ("accepted", "rejected")
    tokens = dict(con.execute("SELECT role, min(completion_tokens) FROM agent_calls GROUP BY 1").fetchall())
    assert set(tokens) == {"solver", "critic"} and all(t > 0 for t in tokens.values())
    con.close()

    pairs = synthgraph("pairs", "--db", str(db), cwd=tmp_path)
    assert pairs.returncode == 0, pairs.stdout + pairs.stderr
    out = tmp_path / "judged.dpo.jsonl"
    export = synthgraph("export", "--db", str(db), "--format", "dpo", "--out", str(out), cwd=tmp_path)
    assert export.returncode == 0, export.stdout + export.stderr
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record["source"] == "judged" and record["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in record["chosen"]] == ["assistant"] == [m["role"] for m in record["rejected"]]
