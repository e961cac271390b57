"""The critique-and-revision family on a scripted model: a pair only when the revision is judged better."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fakes import RoleScript, ScriptedPool
from readback import rows

from synthgraph.graphs.critique_revise import draw_principles
from synthgraph.graphs.judged_pairs import Instruction
from synthgraph.graphs.recipe import load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
PRINCIPLES = ["Be brief.", "Be true.", "Follow the format."]


def rated(original: int, revision: int):
    def judge(messages) -> str:
        score = revision if "REVISED" in messages[-1].content else original
        return json.dumps({a: {"rationale": "because", "rating": score} for a in ASPECTS})
    return judge


def run(tmp_path: Path, script: RoleScript, **pairs) -> Path:
    recipe = parse_recipe({"name": "t", "graph": "critique_revise", "concurrency": 1,
                           "seeds": {"inline": [{"id": "q1", "instruction": "Explain tides."}]},
                           "critique": {"principles": PRINCIPLES, "per_critique": 2},
                           "pairs": {"min_margin": 1.0, "min_score": 3.0, **pairs}})
    db = tmp_path / "s.duckdb"
    asyncio.run(Runner(recipe, load_seeds(recipe, base=Path("."), where="test"), store_path=db,
                       pool=ScriptedPool(script)).run())
    return db


def script(judge) -> RoleScript:
    return RoleScript({"respond": "Tides are caused by wind.", "critique": "Principle 2: tides are not wind.",
                       "revise": "REVISED: tides come from the Moon's pull.", "judge": judge})


def test_a_better_revision_is_chosen_over_the_original(tmp_path):
    fake = script(rated(original=2, revision=4))
    db = run(tmp_path, fake)
    assert fake.calls == {"respond": 1, "critique": 1, "revise": 1, "judge": 2}
    # the critic and the reviser were shown the drawn principles and the critique
    assert "Principle 2: tides are not wind." in fake.prompts["revise"][0][-1].content
    assert rows(db, "SELECT kind, status, score FROM samples ORDER BY kind") == [
        ("original_response", "rejected", 2.0), ("revised_response", "accepted", 4.0)]
    assert rows(db, "SELECT source, margin FROM preference_pairs") == [("critique_revision", 2.0)]
    (payload,) = rows(db, "SELECT payload FROM samples WHERE kind = 'revised_response'")[0]
    assert json.loads(payload)["critique"] == "Principle 2: tides are not wind."
    assert len(json.loads(payload)["principles"]) == 2


def test_no_pair_when_the_revision_is_not_better_by_the_margin(tmp_path):
    db = run(tmp_path, script(rated(original=3, revision=4)), min_margin=1.5)
    assert rows(db, "SELECT kind, status FROM samples ORDER BY kind") == [
        ("original_response", "accepted"), ("revised_response", "rejected")]
    assert rows(db, "SELECT count(*) FROM preference_pairs") == [(0,)]


def test_a_worse_revision_never_becomes_a_reversed_pair(tmp_path):
    db = run(tmp_path, script(rated(original=5, revision=1)))
    assert rows(db, "SELECT count(*) FROM preference_pairs") == [(0,)]


def test_a_revision_failing_an_aspect_does_not_win_and_an_original_failing_one_is_not_kept(tmp_path):
    def judge(messages) -> str:  # the revision is rated 5 but 2 on honesty (mean 4.25); the original 3 throughout
        revised = "REVISED" in messages[-1].content
        return json.dumps({a: {"rationale": "because", "rating": (2 if a == "honesty" else 5) if revised else 3}
                           for a in ASPECTS})

    db = run(tmp_path, script(judge))
    assert rows(db, "SELECT kind, status, reason FROM samples ORDER BY kind") == [
        ("original_response", "accepted", None),
        ("revised_response", "rejected", "rated 4.25, failing honesty 2/5 (under 3)")]
    assert rows(db, "SELECT count(*) FROM preference_pairs") == [(0,)]
    (tmp_path / "2").mkdir()
    def honesty_fails(messages) -> str:  # both rated 5 but 2 on honesty: a mean of 4.25, above min_score
        return json.dumps({a: {"rationale": "because", "rating": 2 if a == "honesty" else 5} for a in ASPECTS})

    other = run(tmp_path / "2", script(honesty_fails))
    assert rows(other, "SELECT kind, status FROM samples ORDER BY kind") == [
        ("original_response", "rejected"), ("revised_response", "rejected")]


def test_principles_are_drawn_the_same_way_on_a_rerun():
    seed = Instruction(id="q9", instruction="x")
    assert draw_principles(seed, tuple(PRINCIPLES), 2) == draw_principles(seed, tuple(PRINCIPLES), 2)
