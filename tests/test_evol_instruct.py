"""Evol-Instruct: the elimination rules, survivors becoming parents, and the lineage as a SQL join."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fakes import RoleScript, ScriptedPool
from readback import rows

from synthgraph.agents.evol_instruct_roles import OPERATIONS
from synthgraph.graphs.recipe import load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner
from synthgraph.tools.evolution_checks import copies_prompt, gives_up, only_stop_words

SEEDS = [{"id": "t1", "instruction": "Explain what a hash table is."}]
GAIN = json.dumps({"reason": "The second adds a constraint.", "equal": False})
SAME = json.dumps({"reason": "Same request.", "equal": True})
LINEAGE_SQL = """
SELECT coalesce(parent.payload->>'instruction', child.payload->>'parent_instruction') AS parent,
       child.payload->>'operation' AS operation, child.payload->>'instruction' AS child, child.status
FROM samples child LEFT JOIN samples parent ON parent.sample_id = (child.payload->>'parent_sample_id')
WHERE child.kind = 'evol_instruction' ORDER BY CAST(child.payload->>'generation' AS INTEGER)
"""


def evolved(*texts: str):
    replies = iter(texts)
    return lambda messages: json.dumps({"instruction": next(replies)})


def run(tmp_path: Path, script: RoleScript, **evolution) -> Path:
    recipe = parse_recipe({"name": "t", "graph": "evol_instruct", "concurrency": 1, "seeds": {"inline": SEEDS},
                           "evolution": {"generations": 3, "operations": {"add_constraints": 1}, **evolution}})
    db = tmp_path / "s.duckdb"
    asyncio.run(Runner(recipe, load_seeds(recipe, base=Path("."), where="test"), store_path=db,
                       pool=ScriptedPool(script)).run())
    return db


def test_elimination_rules_of_the_method():
    assert gives_up("Sorry, I cannot help with that.") is not None
    assert gives_up("Sorry for the wait! " + "Here is a long, complete answer. " * 20) is None  # long: not giving up
    assert only_stop_words("... it is, and the?") is not None and only_stop_words("It is 42.") is None
    assert copies_prompt("#Rewritten Prompt#: explain hashing") is not None
    assert copies_prompt("Explain hashing with an example in Python.") is None


def test_a_surviving_evolution_is_the_parent_of_the_next_and_a_failed_one_is_not(tmp_path):
    gains = iter([GAIN, SAME, GAIN])
    script = RoleScript({
        "evolve": evolved("Explain what a hash table is, with one example in Python.",
                          "Explain what a hash table is, with one example in Python code.",
                          "Explain what a hash table is, with one example in Python, and its worst case."),
        "respond": "A hash table maps keys to buckets. " * 5,
        "gain": lambda m: next(gains)})
    db = run(tmp_path, script)
    got = rows(db, LINEAGE_SQL)
    assert got == [
        ("Explain what a hash table is.", "add_constraints",
         "Explain what a hash table is, with one example in Python.", "accepted"),
        # no information gain: eliminated, so the third generation still grows from the first
        ("Explain what a hash table is, with one example in Python.", "add_constraints",
         "Explain what a hash table is, with one example in Python code.", "rejected"),
        ("Explain what a hash table is, with one example in Python.", "add_constraints",
         "Explain what a hash table is, with one example in Python, and its worst case.", "accepted")]
    assert rows(db, "SELECT reason FROM samples WHERE status = 'rejected'") == [
        ("information_gain: no information gain: Same request.",)]
    assert rows(db, "SELECT verifier, outcome, count(*) FROM verdicts GROUP BY ALL ORDER BY 1, 2") == [
        ("has_content", "passed", 3), ("information_gain", "failed", 1), ("information_gain", "passed", 2),
        ("not_copied", "passed", 3), ("response_given", "passed", 3)]


def test_a_copied_prompt_is_eliminated_before_any_response_and_a_give_up_after_one(tmp_path):
    script = RoleScript({"evolve": evolved("#Rewritten Prompt#: explain hash tables", "Explain hash tables to a chef."),
                         "respond": "Sorry, I cannot do that.", "gain": GAIN})
    db = run(tmp_path, script, generations=2)
    assert script.calls == {"evolve": 2, "respond": 1}
    assert rows(db, "SELECT left(reason, 30) FROM samples ORDER BY payload->>'generation'") == [
        ("not_copied: the instruction co",), ("response_given: the response g",)]


def test_operations_are_drawn_from_the_recipe_mix_the_same_way_on_a_rerun(tmp_path):
    replies = (f"Explain what a hash table is, variant {i} with extra detail." for i in range(20))
    script = RoleScript({"evolve": lambda m: json.dumps({"instruction": next(replies)}),
                         "respond": "An answer with content. " * 5, "gain": GAIN})
    db = run(tmp_path, script, generations=4, operations={"deepen": 1, "breadth": 1})
    operations = [op for (op,) in rows(db, "SELECT payload->>'operation' FROM samples ORDER BY payload->>'generation'")]
    assert set(operations) <= {"deepen", "breadth"} and len(operations) == 4
    # the evolver was told each drawn operation
    for operation, prompt in zip(operations, script.prompts["evolve"]):
        assert OPERATIONS[operation] in prompt[-1].content
