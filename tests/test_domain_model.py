"""The grounded-QA demo on the real embedded model (vLLM on CPU): the corpus lands in the run's store and every
answer carries its computable verdicts. Asserted on DuckDB rows, never on model wording."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from command import synthgraph

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model
def test_domain_demo_ingests_its_corpus_and_checks_every_answer_against_the_passages(tmp_path):
    db = tmp_path / "qa.duckdb"
    # Three seeds keep it to a few minutes on two cores: a proposed factual question, a ready answerable one, and
    # a proposed question the corpus should not answer.
    run = synthgraph("run", str(ROOT / "demos" / "domain_qa.yaml"), "--limit", "3", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr

    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone() == (3,)
        documents, chunks = con.execute(
            "SELECT count(DISTINCT doc_id), count(*) FROM chunks WHERE corpus = 'pydoc-topics'").fetchone()
        assert documents > 50 and chunks > 300
        # the ready question always reaches the solver; every answer or decline it gives is checked
        answers = con.execute("SELECT sample_id, status FROM samples WHERE kind = 'grounded_qa'").fetchall()
        assert answers
        for sample_id, status in answers:
            verifiers = {v for (v,) in con.execute("SELECT verifier FROM verdicts WHERE sample_id = ?", [sample_id]
                                                    ).fetchall()}
            assert status == "error" or {"question", "citations", "support", "answerability"} <= verifiers
        # citations name only chunks of the store; a passage from every search is in the stored chat turns
        cited = con.execute("SELECT DISTINCT unnest(from_json(payload->'citations', '[\"varchar\"]')) "
                            "FROM samples WHERE kind = 'grounded_qa'").fetchall()
        known = {c for (c,) in con.execute("SELECT chunk_id FROM chunks").fetchall()}
        assert {c for (c,) in cited} <= known
        tool_turns = con.execute("SELECT content FROM messages WHERE role = 'tool'").fetchall()
        assert tool_turns and all("chunk_id" in json.loads(content)[0] for (content,) in tool_turns
                                  if json.loads(content))
        roles = dict(con.execute("SELECT role, min(completion_tokens) FROM agent_calls GROUP BY 1").fetchall())
        assert {"proposer", "solver"} <= set(roles) and all(tokens > 0 for tokens in roles.values())
    finally:
        con.close()
