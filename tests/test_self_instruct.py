"""Self-Instruct: the instruction filters, novelty against the pool and the store, rounds and the pool bound."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fakes import RoleScript, ScriptedPool
from readback import rows

from synthgraph.agents.self_instruct_roles import batch_grammar
from synthgraph.graphs.recipe import load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner
from synthgraph.tools.instructions import InstructionPool, instruction_problem, similarity

SEEDS = [{"id": "t1", "instruction": "Write a short poem about autumn leaves falling in a quiet park."}]
GOOD = json.dumps({"reason": "Clear and done.", "answerable": True, "score": 8})


def batch(*texts: str) -> str:
    return json.dumps({"instructions": list(texts)})


def run(tmp_path: Path, script: RoleScript, *, seeds=SEEDS, db: Path | None = None, **growth) -> Path:
    recipe = parse_recipe({"name": "t", "graph": "self_instruct", "concurrency": 1, "seeds": {"inline": seeds},
                           "growth": {"rounds": 2, "per_round": 3, "examples": 2, **growth}})
    db = db or tmp_path / "s.duckdb"
    asyncio.run(Runner(recipe, load_seeds(recipe, base=Path("."), where="test"), store_path=db,
                       pool=ScriptedPool(script)).run())
    return db


def test_instruction_filters_follow_self_instruct():
    assert instruction_problem("Summarize this.") == "too short (2 words < 3)"
    assert instruction_problem(" ".join(["word"] * 151)).startswith("too long")
    assert "text model cannot do ('image')" in instruction_problem("Describe the image below in detail.")
    assert instruction_problem("- Write a limerick about cats.") == "starts with '-'"
    assert instruction_problem("Write a limerick about a cat who hates Mondays.") is None


def test_pool_admits_only_instructions_below_the_similarity_bound():
    pool = InstructionPool(["Write a poem about the sea at night."], max_similarity=0.7)
    close = pool.admit("Write a poem about the sea at dawn.")
    assert not close.novel and close.similarity >= 0.7 and close.nearest == "Write a poem about the sea at night."
    far = pool.admit("Explain how a refrigerator keeps food cold.")
    assert far.novel and len(pool) == 2
    # once admitted, an instruction blocks its own near-copies
    assert not pool.admit("Explain how a refrigerator keeps the food cold.").novel
    assert similarity("a b c", "a b c") == 1.0


def test_kept_instructions_are_answered_judged_and_dropped_ones_say_why(tmp_path):
    proposals = iter([
        batch("Explain how vaccines train the immune system.",             # kept
              "Write a short poem about autumn leaves falling in a quiet park today.",  # near-copy of the seed
              "Draw a map of your town."),                                  # not a text task
        batch("List four uses of baking soda around the house.", "Explain how vaccines train the immune system."),
    ])
    script = RoleScript({"propose": lambda m: next(proposals), "respond": "Here you go.", "judge": GOOD})
    db = run(tmp_path, script)
    assert script.calls == {"propose": 2, "respond": 2, "judge": 2}
    got = rows(db, "SELECT payload->>'candidate', kind, status, left(reason, 40) FROM samples ORDER BY 1")
    assert got == [("r0c0", "self_instruct", "accepted", None),
                   ("r0c1", "instruction_candidate", "rejected", "not novel: ROUGE-L 0.96 >= 0.7 with 'Wri"),
                   ("r0c2", "instruction_candidate", "rejected", "not well-formed: asks for something a te"),
                   ("r1c0", "self_instruct", "accepted", None),
                   # the second round's repeat of a kept instruction is caught by the pool, not only the seeds
                   ("r1c1", "instruction_candidate", "rejected", "not novel: ROUGE-L 1 >= 0.7 with 'Explai")]
    # the second proposal was shown an instruction kept in the first round
    assert "Explain how vaccines train the immune system." in script.prompts["propose"][1][-1].content
    assert rows(db, "SELECT verifier, outcome, count(*) FROM verdicts GROUP BY ALL ORDER BY 1, 2") == [
        ("answerable", "passed", 2), ("critic", "passed", 2), ("novelty", "failed", 2), ("novelty", "passed", 2),
        ("well_formed", "failed", 1)]


def test_unanswerable_instructions_are_rejected_but_stay_in_the_pool(tmp_path):
    script = RoleScript({"propose": batch("Tell me what I ate for breakfast yesterday morning."),
                         "respond": "I cannot know that.",
                         "judge": json.dumps({"reason": "needs facts it lacks", "answerable": False, "score": 2})})
    db = run(tmp_path, script, rounds=2)
    assert rows(db, "SELECT payload->>'candidate', kind, status, left(reason, 16) FROM samples ORDER BY 1") == [
        ("r0c0", "self_instruct", "rejected", "not answerable: "),
        ("r1c0", "instruction_candidate", "rejected", "not novel: ROUGE")]


def test_growth_stops_at_max_pool_and_a_rerun_checks_against_the_store(tmp_path):
    script = RoleScript({"propose": batch("Explain how vaccines train the immune system."),
                         "respond": "Here.", "judge": GOOD})
    db = run(tmp_path, script, rounds=5, max_pool=2)
    # the seed plus one kept instruction fill the pool: no second round
    assert script.calls["propose"] == 1
    # a new run (other seeds) in the same store: the instruction kept before is not novel any more
    again = RoleScript({"propose": batch("Explain how vaccines train the immune system."),
                        "respond": "Here.", "judge": GOOD})
    run(tmp_path, again, db=db, rounds=1, seeds=[{"id": "t2", "instruction": "Name three rivers in South America."}])
    assert rows(db, "SELECT count(*) FROM samples WHERE kind = 'self_instruct'") == [(1,)]
    assert again.calls["respond"] == 0


def test_a_pool_that_starts_full_takes_no_proposal_at_all(tmp_path):
    script = RoleScript({"propose": batch("Explain how vaccines train the immune system."),
                         "respond": "Here.", "judge": GOOD})
    seeds = [{"id": f"t{i}", "instruction": f"Write a short poem about the number {i} and its shape."}
             for i in range(4)]
    db = run(tmp_path, script, seeds=seeds, rounds=1, max_pool=4)  # the four seed tasks fill it
    assert script.calls["propose"] == 0
    assert rows(db, "SELECT count(*) FROM seeds WHERE status = 'done'") == [(4,)]


def test_a_failed_proposal_is_an_error_sample_and_the_next_round_still_runs(tmp_path):
    replies = iter(["not json", "not json", "not json", batch("Describe how tides work in two sentences.")])
    script = RoleScript({"propose": lambda m: next(replies), "respond": "Here.", "judge": GOOD})
    db = run(tmp_path, script)
    assert rows(db, "SELECT kind, status, payload->>'round' FROM samples ORDER BY payload->>'round'") == [
        ("instruction_candidate", "error", "0"), ("self_instruct", "accepted", "1")]


def test_the_proposers_grammar_leaves_room_for_max_words(tmp_path):
    """The grammar bounds an instruction's characters only to stop a runaway string; max_words is the limit."""
    script = RoleScript({"propose": batch("Describe the water cycle in three sentences for a child."),
                         "respond": "Here you go.", "judge": GOOD})
    run(tmp_path, script, rounds=1, max_words=300)
    grammar = script.kwargs["propose"][0]["json_schema"]
    assert grammar["properties"]["instructions"]["items"]["maxLength"] >= 300 * 6
    assert batch_grammar(3, 1)["properties"]["instructions"]["items"]["maxLength"] >= 600   # never under the old bound
