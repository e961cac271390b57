"""The Self-Instruct demo (2 rounds) on the real embedded model, asserted on DuckDB rows, not on wording."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest
from command import synthgraph

from synthgraph.tools.instructions import similarity

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model
def test_self_instruct_demo_grows_novel_judged_instructions_over_two_rounds(tmp_path):
    db = tmp_path / "si.duckdb"
    run = synthgraph("run", str(ROOT / "demos" / "self_instruct.yaml"), "--limit", "2", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone() == (2,)
    kept = con.execute("""SELECT payload->>'instruction', CAST(payload->>'round' AS INTEGER), status,
                                 CAST(payload->>'similarity' AS DOUBLE)
                          FROM samples WHERE kind = 'self_instruct'""").fetchall()
    assert kept, "no instruction was kept"
    # both rounds proposed (a round only is skipped when the pool is full: max_pool 200 is far)
    rounds = {r for (r,) in con.execute("SELECT DISTINCT CAST(payload->>'round' AS INTEGER) FROM samples").fetchall()}
    assert rounds == {0, 1}
    # novelty holds across the whole run: every kept instruction is below the bound against the seed tasks and
    # against every other kept instruction, whichever graph instance kept it
    seeds = [line for (line,) in con.execute("SELECT payload->>'instruction' FROM seeds").fetchall()]
    texts = [t for t, _, _, _ in kept]
    assert all(s < 0.7 for _, _, _, s in kept)
    assert all(similarity(a, b) < 0.7 for a, b in itertools.combinations(texts, 2))
    assert all(similarity(text, seed) < 0.7 for text in texts for seed in seeds)
    # every kept instruction that was answered got an answerable verdict and a critic score
    for (sample_id,) in con.execute("""SELECT s.sample_id FROM samples s JOIN messages m USING (sample_id)
                                       WHERE s.kind = 'self_instruct' AND m.role = 'assistant'""").fetchall():
        verifiers = {v for (v,) in con.execute("SELECT verifier FROM verdicts WHERE sample_id = ?", [sample_id]).fetchall()}
        assert verifiers in ({"novelty", "answerable", "critic"}, {"novelty", "critic"}), verifiers
    dropped = con.execute("SELECT reason FROM samples WHERE kind = 'instruction_candidate' AND status = 'rejected'"
                          ).fetchall()
    assert all(r.startswith(("not novel", "not well-formed")) for (r,) in dropped)
    con.close()
