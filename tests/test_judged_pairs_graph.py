"""The judged-pairs family on a scripted model: n responses, a rubric rating each, the best chosen, pairs by margin."""

from __future__ import annotations

import asyncio
import json
from itertools import count
from pathlib import Path

import pytest
from fakes import RoleScript, ScriptedPool
from readback import rows

from synthgraph.graphs.recipe import RecipeError, load_recipe, load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
# what each scripted response is rated on every aspect: responses say their own quality
QUALITY = {"great": 5, "good": 4, "fine": 4, "meh": 3, "bad": 1}


def rating(messages) -> str:
    text = messages[-1].content.split("Response to rate:")[1]
    word = next(w for w in QUALITY if f"[{w}]" in text)
    return json.dumps({a: {"rationale": f"it is {word}", "rating": QUALITY[word]} for a in ASPECTS})


def responses(*words: str):
    replies = count()
    return lambda messages: f"Answer [{words[next(replies) % len(words)]}]"


def run(tmp_path: Path, script: RoleScript, **pairs) -> Path:
    recipe = parse_recipe({"name": "t", "graph": "judged_pairs", "concurrency": 1,
                           "seeds": {"inline": [{"id": "q1", "instruction": "Say hi."}]},
                           "roles": {"responders": [{"samples": 4, "temperature": 0.7}]},
                           "pairs": {"min_margin": 1.0, "min_score": 3.0, **pairs}})
    db = tmp_path / "s.duckdb"
    seeds = load_seeds(recipe, base=Path("."), where="test")
    asyncio.run(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script)).run())
    return db


def test_best_response_is_chosen_and_pairs_with_each_response_past_the_margin(tmp_path):
    script = RoleScript({"respond": responses("good", "great", "fine", "bad"), "judge": rating})
    db = run(tmp_path, script)
    assert script.calls == {"respond": 4, "judge": 4}
    got = rows(db, "SELECT payload->>'response_key', status, score FROM samples ORDER BY 1")
    assert got == [("p0s0", "rejected", 4.0), ("p0s1", "accepted", 5.0), ("p0s2", "rejected", 4.0),
                   ("p0s3", "rejected", 1.0)]
    # one verdict per aspect per response, the rating as its score
    assert rows(db, "SELECT verifier, count(*), min(score), max(score) FROM verdicts GROUP BY 1 ORDER BY 1") == [
        (f"judge_{a}", 4, 1.0, 5.0) for a in sorted(ASPECTS)]
    pairs = rows(db, """SELECT c.payload->>'response_key', r.payload->>'response_key', p.margin, p.source
                        FROM preference_pairs p JOIN samples c ON c.sample_id = p.chosen_sample_id
                        JOIN samples r ON r.sample_id = p.rejected_sample_id ORDER BY 2""")
    assert pairs == [("p0s1", "p0s0", 1.0, "judged"), ("p0s1", "p0s2", 1.0, "judged"), ("p0s1", "p0s3", 4.0, "judged")]


def test_a_wider_margin_drops_the_close_pairs(tmp_path):
    script = RoleScript({"respond": responses("good", "great", "fine", "bad"), "judge": rating})
    db = run(tmp_path, script, min_margin=1.5)
    assert rows(db, "SELECT margin FROM preference_pairs") == [(4.0,)]


def test_tied_best_responses_choose_one_and_never_pair_with_each_other(tmp_path):
    script = RoleScript({"respond": responses("great", "great", "bad", "great"), "judge": rating})
    db = run(tmp_path, script)
    assert rows(db, "SELECT count(*) FILTER (WHERE status = 'accepted') FROM samples") == [(1,)]
    assert rows(db, "SELECT count(*), min(margin) FROM preference_pairs") == [(1, 4.0)]


def test_no_pairs_when_the_best_response_is_below_min_score(tmp_path):
    script = RoleScript({"respond": responses("meh", "bad"), "judge": rating})
    db = run(tmp_path, script, min_score=3.5)
    assert rows(db, "SELECT count(*) FROM samples WHERE status = 'accepted'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM preference_pairs") == [(0,)]
    assert "no response reached min_score 3.5" in rows(db, "SELECT reason FROM samples LIMIT 1")[0][0]


def test_a_response_failing_one_aspect_is_never_chosen_however_good_its_mean(tmp_path):
    def uneven(messages) -> str:  # "slick" is rated 5 on everything but honesty, where it gets 2
        text = messages[-1].content.split("Response to rate:")[1]
        if "[slick]" not in text:
            return rating(messages)
        return json.dumps({a: {"rationale": "slick", "rating": 2 if a == "honesty" else 5} for a in ASPECTS})

    script = RoleScript({"respond": responses("slick", "good", "bad", "meh"), "judge": uneven})
    db = run(tmp_path, script)
    got = dict(rows(db, "SELECT payload->>'response_key', status || ' ' || coalesce(reason, '') FROM samples"))
    assert got["p0s0"] == "rejected rated 4.25, failing honesty 2/5 (under 3)"
    assert got["p0s1"] == "accepted "  # good: 4 on every aspect, a lower mean than slick's, and honest
    # slick, rated above the chosen one, is no rejected side (no reversed pair); bad and meh pair with the chosen
    assert rows(db, "SELECT r.payload->>'response_key' FROM preference_pairs p JOIN samples r "
                    "ON r.sample_id = p.rejected_sample_id ORDER BY 1") == [("p0s2",), ("p0s3",)]


def test_an_unusable_rating_leaves_the_response_out_of_every_pair(tmp_path):

    def flaky(messages):  # the second response's rating is never valid JSON
        return "no idea" if "[bad]" in messages[-1].content else rating(messages)

    script = RoleScript({"respond": responses("great", "bad", "good", "good"), "judge": flaky})
    db = run(tmp_path, script)
    assert rows(db, "SELECT status, reason LIKE 'judge gave no usable rating%' FROM samples WHERE score IS NULL") == [
        ("rejected", True)]
    assert rows(db, "SELECT count(*) FROM preference_pairs") == [(2,)]
    assert rows(db, "SELECT outcome FROM verdicts WHERE verifier = 'judge'") == [("unchecked",)]


def test_studio_runs_one_json_instruction_through_the_judged_graph(tmp_path):
    from synthgraph.graphs import studio

    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "t", "graph": "judged_pairs", "store": str(tmp_path / "s.duckdb"),
                                "seeds": {"inline": [{"instruction": "Say hi."}]},
                                "roles": {"responders": [{"samples": 2}]}}))
    script = RoleScript({"respond": responses("great", "bad"), "judge": rating})
    graph = studio.studio_graph("judged_pairs", {"configurable": {"recipe": str(path)}}, pool=ScriptedPool(script))
    state = asyncio.run(graph.ainvoke({"seed": {"instruction": "Say hello."}}, context=graph.context_schema()))
    assert len(state["responses"]) == 2 and state["best"] == "p0s0"


def test_model_override_reaches_every_responder_and_the_judge():
    recipe = parse_recipe({"name": "t", "graph": "judged_pairs", "seeds": {"inline": [{"instruction": "x"}]},
                           "roles": {"responders": [{"model": "vllm:qwen2.5-coder-0.5b"}, {"samples": 1}],
                                     "judge": {"model": "vllm:qwen2.5-coder-0.5b"}}})
    moved = recipe.with_overrides(model="openai:http://localhost:8000/v1:big")
    assert {str(moved.role_model(r)) for r in ("responder0", "responder1", "judge")} == {
        str(moved.role_model("judge"))} and "big" in str(moved.role_model("responder0"))


def test_a_min_score_under_the_aspect_floor_is_refused(tmp_path):
    """A response failing no aspect is rated 3 or more: a lower min_score would choose nothing it did not."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "t", "graph": "judged_pairs", "seeds": {"inline": [{"instruction": "x"}]},
                                "pairs": {"min_score": 2}}))
    with pytest.raises(RecipeError, match=r"pairs.min_score: Input should be greater than or equal to 3"):
        load_recipe(path)
