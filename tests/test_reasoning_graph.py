"""The reasoning graph's nodes and routing, driven by a scripted chat model."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import ReasoningScript, ScriptedPool, proposal

from synthgraph.agents.reasoning_roles import numbers_missing_from_problem
from synthgraph.graphs import reasoning
from synthgraph.graphs.reasoning import Seed
from synthgraph.graphs.recipe import parse_recipe


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


def test_a_gold_seed_takes_only_the_steps_of_its_solvers_the_check_and_the_judge(script):
    """Every step of the graph costs a seed's orchestration the same whatever it does (~5% of its CPU): a gold
    seed takes no proposer step, and the judge's verdict ends the seed without a step of its own."""
    async def steps() -> list[str]:
        updates = reasoning.graph.astream(reasoning.initial_state(GOLD), context=make_context(script),
                                          stream_mode="updates")
        return [node async for update in updates for node in update]

    assert asyncio.run(steps()) == ["solve"] * 3 + ["verify", "judge"]


@pytest.mark.parametrize("threshold, status", [(8, "accepted"), (8.5, "rejected")])
def test_a_critic_score_exactly_at_the_threshold_is_accepted_by_the_judge_and_the_rows(script, threshold, status):
    context = make_context(script, samples=1, critic_threshold=threshold)  # the scripted critic scores 8
    state = run_graph(GOLD, context)
    assert state["outcome"] == status
    samples, _, verdicts, _ = reasoning.to_rows(state, run_id="r", seed_id="s", context=context)
    assert [s.status for s in samples] == [status]
    assert {v.verifier: v.outcome for v in verdicts}["critic"] == ("passed" if status == "accepted" else "failed")


def test_proposed_problem_takes_its_reference_from_the_program_output(script):
    state = run_graph(TOPIC, make_context(script))
    assert state["problem"].source == "proposed"
    assert state["problem"].reference == "42"
    assert state["outcome"] == "accepted"


def test_failing_reference_program_rejects_the_problem_with_its_error():
    script = ReasoningScript(proposer=proposal("What is ten divided by nothing?", "print(1/0)"))
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


def test_proposer_reply_without_a_program_is_an_error_not_a_crash():
    script = ReasoningScript(proposer="Problem: Ann has apples. The answer is 42.")
    state = run_graph(TOPIC, make_context(script))
    assert state["outcome"] == "rejected" and state["problem"] is None
    assert script.calls["proposer"] == 2  # retried once (ScriptedPool allows two attempts), then recorded
    samples, *_ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert [(s.kind, s.status) for s in samples] == [("reasoning_problem", "error")]
    assert "no ```python program block" in samples[0].reason


def test_malformed_critic_json_is_retried_then_recorded():
    script = ReasoningScript(critic='{"reason": "fine", "score": "eight"')
    state = run_graph(GOLD, make_context(script, samples=1))
    assert script.calls["critic"] == 2
    samples, _, verdicts, _ = reasoning.to_rows(state, run_id="r", seed_id="s", context=CONTEXT)
    assert "malformed structured output" in samples[0].reason


def test_copy_of_the_seed_example_is_refused_but_new_numbers_are_a_new_problem():
    example = "A jacket costs $80 and is on sale for 25% off. How much does it cost on sale?"
    copying = ReasoningScript(proposer=proposal(example, "print(80 * (100 - 25) / 100)"))
    seed = Seed(topic="discounts", example=example)
    state = run_graph(seed, make_context(copying))
    assert "copied the seed's example" in state["problem_error"]
    variant = ReasoningScript(proposer=proposal(example.replace("80", "120"), "print(120 * (100 - 25) / 100)"),
                              solver="#### 90")
    assert run_graph(seed, make_context(variant))["problem"].reference == "90.0"


def test_problem_that_hides_the_programs_numbers_is_refused():
    script = ReasoningScript(proposer=proposal("Find the perimeter of the rectangle.", "print(2 * (12 + 7))"))
    state = run_graph(TOPIC, make_context(script))
    assert "numbers the problem does not state: 12, 7" in state["problem_error"]


@pytest.mark.parametrize("problem, program, missing", [
    ("A loan of $1,000 at 4% for 3 years.", "print(1000 * 0.04 * 3)", []),
    ("Half of 2.5 litres.", "x = 2.5 / 2  # 7 is not used\nprint(x)", []),
    ("A rectangle of given sides.", "print(12 * 7)", ["12", "7"]),
])
def test_numbers_missing_from_problem(problem, program, missing):
    assert numbers_missing_from_problem(problem, program) == missing


@pytest.mark.parametrize("stdout, reference", [
    ("42\n", "42"), ("1/3\n", "1/3"), ("step 1\n7.5\n", "7.5"), ("The remainder is 3\n", "3"),
    ("Total: 1,250 dollars\n", "1250"), ("3 apples cost $4.50\n", None), ("", None), ("\\frac{1}{2}", "\\frac{1}{2}"),
])
def test_reference_is_the_programs_single_printed_answer(stdout, reference):
    assert reasoning.reference_from_output(stdout) == reference


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
