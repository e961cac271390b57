"""Tool-integrated reasoning (the solver runs Python between turns) and the corroboration of proposed references,
driven by a scripted chat model and the real sandbox."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from fakes import ReasoningScript, ScriptedPool, by_step, proposal

from synthgraph.agents.reasoning_roles import (FINAL_ANSWER_NOW, PYTHON_TOOL, cumulative_program, expected_score,
                                               parse_tir_step)
from synthgraph.graphs import reasoning
from synthgraph.graphs.reasoning import Seed
from synthgraph.graphs.recipe import parse_recipe
from synthgraph.tools.math_answers import AnswerCheck

GOLD = Seed(problem="Ann has 6 bags of 7 apples. How many apples?", answer="42")
TOPIC = Seed(topic="apples in bags")


def make_context(script: ReasoningScript, *, mode="tir", steps=4, budget_s=30.0, **limits
                 ) -> reasoning.ReasoningContext:
    recipe = parse_recipe({"name": "t", "graph": "reasoning", "seeds": {"inline": [{"topic": "x"}]},
                           "roles": {"solver": {"mode": mode, "tir_steps": steps, "tir_sandbox_s": budget_s}}})
    context = reasoning.make_context(recipe, ScriptedPool(script))
    settings = {"samples": 2, "revise_rounds": 0, "critic_threshold": 6, "sandbox_timeout_s": 5, **limits}
    for name, value in settings.items():
        setattr(context, name, value)
    return context


def run_graph(seed: Seed, context) -> dict:
    return asyncio.run(reasoning.graph.ainvoke(reasoning.initial_state(seed), context=context))


def rows(state, context):
    return reasoning.to_rows(state, run_id="r", seed_id="s", context=context)


# ------------------------------------------------------------------------------------------------ TIR


def test_tir_runs_the_block_and_feeds_its_real_output_back():
    script = ReasoningScript()
    state = run_graph(GOLD, make_context(script, samples=1))
    assert state["outcome"] == "accepted"
    attempt = state["attempts"][0]
    assert attempt.mode == "tir" and attempt.key == "r0t0" and attempt.stop_reason == "answered"
    assert [(s.code, s.output, s.status) for s in attempt.steps] == [("print(6 * 7)", "42", "ok")]
    second_prompt = script.prompts["tir"][1]
    assert second_prompt[-1].content.startswith("```output\n42\n```")      # the sandbox's output, not the imagined 41
    assert "41" not in second_prompt[-2].content                           # what came after the block was dropped
    assert "```output\n42" in script.prompts["critic"][0][-1].content      # the critic reads code and outputs


def test_tir_trace_is_stored_as_openai_tool_calls_and_tool_turns():
    context = make_context(ReasoningScript(), samples=1)
    samples, messages, verdicts, _ = rows(run_graph(GOLD, context), context)
    assert samples[0].payload["tools"] == [PYTHON_TOOL] and samples[0].payload["mode"] == "tir"
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    call = messages[1].tool_calls[0]
    assert call["type"] == "function" and call["function"]["name"] == "python"
    assert json.loads(call["function"]["arguments"]) == {"code": "print(6 * 7)"}
    assert (messages[2].tool_call_id, messages[2].name, messages[2].content) == (call["id"], "python", "42")
    assert messages[3].content.endswith("#### 42")
    assert ("math_verify", "passed") in {(v.verifier, v.outcome) for v in verdicts}


def test_tir_keeps_variables_across_blocks_and_shows_only_the_new_blocks_prints():
    script = ReasoningScript(tir=by_step("```python\nbags = 6\nprint('bags known')\n```",
                                         "```python\nprint(bags * 7)\n```", "#### 42"))
    state = run_graph(GOLD, make_context(script, samples=1))
    assert [s.output for s in state["attempts"][0].steps] == ["bags known", "42"]
    assert state["outcome"] == "accepted"


def test_tir_error_is_fed_back_and_the_failed_block_is_not_rerun():
    script = ReasoningScript(tir=by_step("```python\nprint(bags)\n```", "```python\nprint(6 * 7)\n```", "#### 42"))
    steps = run_graph(GOLD, make_context(script, samples=1))["attempts"][0].steps
    assert steps[0].status == "error" and "NameError" in steps[0].output
    assert "NameError" in script.prompts["tir"][1][-1].content
    assert (steps[1].status, steps[1].output) == ("ok", "42")
    assert "print(bags)" not in cumulative_program(steps[:1], "print(1)")


def test_tir_step_limit_asks_for_the_answer_after_the_last_run():
    def endless(messages):
        return "#### 42" if FINAL_ANSWER_NOW in messages[-1].content else "More checks.\n```python\nprint(6 * 7)\n```"

    script = ReasoningScript(tir=endless)
    attempt = run_graph(GOLD, make_context(script, samples=1, steps=2))["attempts"][0]
    assert len(attempt.steps) == 2 and attempt.stop_reason == "step_limit"
    assert script.calls["tir"] == 3 and attempt.solution == "#### 42"
    assert attempt.check.outcome == "match"


def test_tir_sandbox_time_is_bounded_across_the_whole_solution():
    def slow(messages):
        return "#### 42" if FINAL_ANSWER_NOW in messages[-1].content else "```python\nimport time\ntime.sleep(5)\n```"

    attempt = run_graph(GOLD, make_context(ReasoningScript(tir=slow), samples=1, budget_s=1.0))["attempts"][0]
    assert [s.status for s in attempt.steps] == ["timeout"] and attempt.stop_reason == "time_limit"
    assert attempt.steps[0].duration_s < 3


def test_tir_reply_with_neither_code_nor_answer_is_retried_then_an_error():
    script = ReasoningScript(tir="Let me think about the apples.")
    samples, *_ = rows(*(lambda c: (run_graph(GOLD, c), c))(make_context(script, samples=1)))
    assert script.calls["tir"] == 2 and samples[0].status == "error"
    assert "neither a ```python block nor a final answer" in samples[0].reason


def test_mode_both_solves_k_ways_in_each_mode():
    script = ReasoningScript()
    state = run_graph(GOLD, make_context(script, mode="both", samples=2))
    assert sorted(a.key for a in state["attempts"]) == ["r0k0", "r0k1", "r0t0", "r0t1"]
    assert script.calls["solver"] == 2 and script.calls["tir"] == 4    # two turns per TIR solution


@pytest.mark.parametrize("reply, parsed", [
    ("Compute.\n```python\nprint(1)\n```\n```output\n9\n```\n#### 9", ("Compute.", "print(1)")),
    ("```py\nx = 2\nprint(x)", ("", "x = 2\nprint(x)")),     # stopped at the closing fence, which is not kept
    ("So the answer is 4.\n#### 4", None),
])
def test_parse_tir_step(reply, parsed):
    assert parse_tir_step(reply) == parsed


# ------------------------------------------------------------------------------------ validated problems


def test_second_program_that_agrees_corroborates_the_reference():
    script = ReasoningScript()
    state = run_graph(TOPIC, make_context(script, mode="cot"))
    assert state["validation"].status == "corroborated" and state["validation"].by == "program"
    assert state["validation"].second_answer == "42" and script.calls["reference"] == 1
    assert state["outcome"] == "accepted"


def test_wrong_reference_is_rejected_as_unvalidated_reference_with_both_answers():
    script = ReasoningScript(proposer=proposal("Ann has 6 bags of 7 apples. How many apples?", "print(6 * 7 - 1)"))
    context = make_context(script, mode="cot", samples=3, revise_rounds=1)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "rejected" and state["validation"].status == "unvalidated"
    assert script.calls["diagnose"] == 0                      # no revision against a reference nobody reached
    samples, _, verdicts, _ = rows(state, context)
    problem = next(s for s in samples if s.kind == "reasoning_problem")
    assert problem.status == "rejected" and problem.reason.startswith("unvalidated_reference")
    assert problem.payload["reference"] == "41" and problem.payload["validation"]["second_answer"] == "42"
    assert problem.payload["validation"]["solver_answers"] == ["42", "42", "42"]
    assert ("reference_validation", "failed") in {(v.verifier, v.outcome) for v in verdicts}
    traces = [s for s in samples if s.kind == "reasoning_trace"]
    assert len(traces) == 3 and all(s.status == "rejected" and s.reason.startswith("unvalidated_reference")
                                    for s in traces)
    # each trace carries the failed verdict it was rejected by, whatever math_verify said against that reference
    assert all(("reference_validation", "failed") in {(v.verifier, v.outcome) for v in verdicts
                                                      if v.sample_id == t.sample_id} for t in traces)


def test_solvers_majority_corroborates_a_reference_the_second_program_missed():
    script = ReasoningScript(reference="```python\nprint(6 + 7)\n```")
    state = run_graph(TOPIC, make_context(script, mode="cot", samples=3))
    assert state["validation"].status == "corroborated" and state["validation"].by == "solvers"
    assert state["validation"].second_answer == "13" and state["outcome"] == "accepted"


def test_gold_problems_and_recipes_that_opt_out_are_not_corroborated():
    script = ReasoningScript()
    assert "validation" not in run_graph(GOLD, make_context(script, mode="cot"))
    recipe = parse_recipe({"name": "t", "graph": "reasoning", "seeds": {"inline": [{"topic": "x"}]},
                           "validate_references": False})
    state = run_graph(TOPIC, reasoning.make_context(recipe, ScriptedPool(script)))
    assert "validation" not in state and state["outcome"] == "accepted"
    assert script.calls["reference"] == 0


def _check(outcome):
    return None if outcome is None else AnswerCheck(outcome=outcome, extracted="1", reason="")


@pytest.mark.parametrize("outcomes, corroborated", [
    (["match", "match", "mismatch"], True),
    (["match", "mismatch"], False),                  # a tie is no majority
    (["match", None, None], False),                  # solvers that gave no answer count against
    (["match", "match", "unparseable", "match"], True),
])
def test_solvers_majority_rule(outcomes, corroborated):
    assert reasoning.solvers_corroborate([_check(o) for o in outcomes]) is corroborated


# ------------------------------------------------------------------------------ G-Eval expected score


def _position(token: str, **top: float) -> dict:
    tops = [{"token": t, "logprob": math.log(p)} for t, p in top.items()]
    return {"token": token, "logprob": math.log(top.get(token.strip(), 1.0)), "top_logprobs": tops}


def _critique_logprobs(score_positions: list[dict]) -> tuple[str, list[dict]]:
    head = '{"reason":"ok","score":'
    tokens = [{"token": head, "logprob": 0.0, "top_logprobs": []}, *score_positions,
              {"token": "}", "logprob": 0.0, "top_logprobs": []}]
    return "".join(t["token"] for t in tokens), tokens


def test_expected_score_weighs_each_score_by_its_probability():
    text, logprobs = _critique_logprobs([_position("8", **{"8": 0.5, "6": 0.25, "2": 0.25})])
    assert expected_score(text, logprobs) == pytest.approx(0.5 * 8 + 0.25 * 6 + 0.25 * 2)


def test_expected_score_reads_ten_from_the_token_after_a_leading_one():
    text, logprobs = _critique_logprobs([_position("1", **{"1": 0.8, "9": 0.2}),
                                         _position("0", **{"0": 0.75, "}": 0.25})])
    assert expected_score(text, logprobs) == pytest.approx(0.8 * (0.75 * 10 + 0.25 * 1) + 0.2 * 9)


def test_expected_score_is_none_without_logprobs_or_a_score():
    assert expected_score('{"reason":"ok","score":7}', None) is None
    assert expected_score('{"reason":"ok"}', [_position("x", x=1.0)]) is None


def test_a_draft_whose_program_prints_no_single_answer_gets_one_fresh_draft():
    drafts = iter([proposal("Ann has 6 bags of 7 apples. How many apples?", "print('bags', 6, 'apples', 42)"),
                   proposal("Ann has 6 bags of 7 apples. How many apples?", "print(6 * 7)")])
    script = ReasoningScript(proposer=lambda messages: next(drafts))
    state = run_graph(TOPIC, make_context(script, mode="cot"))
    assert script.calls["proposer"] == 2 and state["problem"].reference == "42" and state["outcome"] == "accepted"
