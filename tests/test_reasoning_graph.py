"""The reasoning graph's nodes and routing, driven by a scripted chat model."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import ReasoningScript, ScriptedPool

from synthgraph.graphs import reasoning
from synthgraph.graphs.recipe import Seed, parse_recipe


def make_context(script: ReasoningScript, **limits) -> reasoning.ReasoningContext:
    recipe = parse_recipe({"name": "t", "graph": "reasoning", "seeds": {"inline": [{"topic": "x"}]}})
    context = reasoning.make_context(recipe, ScriptedPool(script))
    for name, value in {"samples": 3, "revise_rounds": 1, "critic_threshold": 6, "sandbox_timeout_s": 5, **limits}.items():
        setattr(context, name, value)
    return context


def run_graph(seed: Seed, context) -> dict:
    return asyncio.run(reasoning.graph.ainvoke(reasoning.initial_state(seed), context=context))


TOPIC = Seed(topic="apples in bags")
CONTEXT = reasoning.ReasoningContext(proposer=None, solver=None, critic=None, critic_threshold=6)
GOLD = Seed(problem="What is 6 times 7?", answer="42")


def test_gold_seed_skips_the_proposer_and_accepts_verified_traces(script):
    state = run_graph(GOLD, make_context(script))
    assert script.calls["proposer"] == 0
    assert state["outcome"] == "accepted"
    assert len(state["attempts"]) == 3
    assert all(a.check.outcome == "match" and a.critique.score == 8 for a in state["attempts"])
    assert script.calls["critic"] == 3


def test_proposed_problem_takes_its_reference_from_the_program_output(script):
    state = run_graph(TOPIC, make_context(script))
    assert state["problem"].source == "proposed"
    assert state["problem"].reference == "42"
    assert state["outcome"] == "accepted"


def test_failing_reference_program_rejects_the_problem_with_its_error():
    script = ReasoningScript(proposer=json.dumps({"problem": "What is ten divided by nothing?", "program": "print(1/0)"}))
    state = run_graph(TOPIC, make_context(script))
    assert state["outcome"] == "rejected"
    assert "ZeroDivisionError" in state["problem_error"]
    assert script.calls["solver"] == 0
    samples, messages, verdicts, _ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert [(s.kind, s.status) for s in samples] == [("reasoning_problem", "rejected")]
    assert verdicts[0].verifier == "reference_program" and verdicts[0].outcome == "failed"


def test_unverified_attempts_get_one_revision_with_the_critics_feedback():
    script = ReasoningScript(solver="6 plus 7 is 13.\n#### 13")
    state = run_graph(GOLD, make_context(script, revise_rounds=1))
    assert state["outcome"] == "rejected"
    assert state["revisions"] == 1
    assert script.calls["diagnose"] == 1
    assert script.calls["solver"] == 6  # k=3 in round 0, k=3 in the revision round
    revised = [a for a in state["attempts"] if a.round == 1]
    assert len(revised) == 3 and all(a.feedback == "Multiply, do not add." for a in revised)
    assert "Multiply, do not add." in script.prompts["solver"][-1][-1].content


def test_revision_that_verifies_is_accepted():
    replies = iter(["#### 13"] * 3 + ["6 times 7 is 42.\n#### 42"] * 3)
    script = ReasoningScript(solver=lambda messages: next(replies))
    state = run_graph(GOLD, make_context(script, revise_rounds=1))
    assert state["outcome"] == "accepted"
    samples, *_ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert sorted(s.status for s in samples) == ["accepted"] * 3 + ["rejected"] * 3


def test_no_revision_when_rounds_are_zero():
    script = ReasoningScript(solver="#### 13")
    state = run_graph(GOLD, make_context(script, revise_rounds=0))
    assert state["outcome"] == "rejected" and script.calls["diagnose"] == 0


def test_critic_below_threshold_rejects_with_its_reason():
    script = ReasoningScript(critic=json.dumps({"reason": "The answer is asserted, not derived.", "score": 3}))
    state = run_graph(GOLD, make_context(script))
    assert state["outcome"] == "rejected"
    samples, _, verdicts, _ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert all(s.status == "rejected" and "asserted, not derived" in s.reason for s in samples)
    assert {(v.verifier, v.outcome) for v in verdicts} == {("math_verify", "passed"), ("critic", "failed")}


def test_solver_output_without_final_answer_is_retried_then_recorded_as_error():
    script = ReasoningScript(solver="I think it is a lot of apples.")
    state = run_graph(GOLD, make_context(script, samples=1, revise_rounds=0))
    assert script.calls["solver"] == 2  # ScriptedPool allows two attempts per call
    samples, *_ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert [s.status for s in samples] == ["error"]
    assert "no final answer" in samples[0].reason


def test_malformed_proposer_json_is_an_error_not_a_crash():
    script = ReasoningScript(proposer="here is a problem: {not json")
    state = run_graph(TOPIC, make_context(script))
    assert state["outcome"] == "rejected" and state["problem"] is None
    samples, *_ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert [(s.kind, s.status) for s in samples] == [("reasoning_problem", "error")]
    assert "malformed structured output" in samples[0].reason


def test_critic_that_never_answers_leaves_the_trace_unjudged_and_rejected():
    script = ReasoningScript(critic="")
    state = run_graph(GOLD, make_context(script, samples=1))
    samples, _, verdicts, _ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert samples[0].status == "rejected" and "critic gave no usable verdict" in samples[0].reason
    assert ("critic", "unchecked") in {(v.verifier, v.outcome) for v in verdicts}


def test_unparseable_reference_is_unchecked_not_wrong():
    script = ReasoningScript()
    seed = Seed(problem="Name a colour.", answer="\\unknowncommand{{")
    state = run_graph(seed, make_context(script, samples=1, revise_rounds=0))
    samples, _, verdicts, _ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert verdicts[0].outcome == "unchecked"
    assert samples[0].status == "rejected" and samples[0].reason.startswith("answer could not be checked")


@pytest.mark.parametrize("revisions, rounds, expected", [(0, 1, "diagnose"), (1, 1, "reject"), (0, 0, "reject")])
def test_route_after_verify_when_nothing_verified(revisions, rounds, expected):
    failed = reasoning.Attempt(key="r0k0", round=0, solution="#### 1",
                               check={"outcome": "mismatch", "extracted": "1", "reason": "1 != 2"})
    state = {"attempts": [failed], "revisions": revisions}

    class Runtime:
        context = type("C", (), {"revise_rounds": rounds})

    assert reasoning.route_after_verify(state, Runtime) == expected
