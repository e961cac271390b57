"""Unit tests of a candidate solution, executed in the sandbox.

Two test styles: plain module-level `assert`s (MBPP style) and HumanEval's `check(candidate)` function,
called with the solution's `entry_point`. Solution and tests share one namespace, as in both benchmarks'
own harnesses, and run as `solution.py` then `tests.py` so a failure names the file and line it came from.

A pass has to be reported by the harness itself, tagged with a per-run nonce, after the last test ran:
a solution that calls `exit(0)` / `os._exit(0)` before the tests, or prints "passed", does not pass.
(An adversary in the same interpreter could still dig the nonce out of the harness's frame; this stops the
cheap reward hacks, not a determined one.)
"""

from __future__ import annotations

import json
import secrets
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from synthgraph.tools.sandbox import SandboxResult, arun_python, run_python

__all__ = ["TestOutcome", "TestRun", "arun_tests", "run_tests"]

TestOutcome = Literal["passed", "failed", "timed_out", "error"]

# main.py in the sandbox. Its stdout carries only the verdict line; the candidate's own prints go to stderr.
_HARNESS = r'''
import json, os, sys, traceback

FILES = ("solution.py", "tests.py")


def source(name):
    with open(name, encoding="utf-8") as file:
        return file.read()


def describe(error):
    if isinstance(error, SystemExit):
        return f"exit({error.code!r}) was called"
    if isinstance(error, SyntaxError) and error.filename in FILES:
        return f"{type(error).__name__} at {error.filename} line {error.lineno}: {error.msg}"
    message = str(error)
    text = type(error).__name__ + (f": {message[:300]}" if message else "")
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename in FILES]
    for position, frame in enumerate(reversed(frames)):
        if position == 0 or frame.filename == "tests.py":
            line = f": {frame.line.strip()}" if frame.line else ""
            text += f"{' at' if position == 0 else ', called from'} {frame.filename} line {frame.lineno}{line}"
            if frame.filename == "tests.py":
                break
    return text


def outcome(kind, detail):
    return {"outcome": kind, "detail": detail}


def verdict(entry_point):
    try:
        solution = compile(source("solution.py"), "solution.py", "exec")
    except SyntaxError as error:
        return outcome("failed", "the solution does not compile: " + describe(error))
    tests_source = source("tests.py")
    if not tests_source.strip():
        return outcome("error", "the tests are empty")
    try:
        tests = compile(tests_source, "tests.py", "exec")
    except SyntaxError as error:
        return outcome("error", "the tests do not compile: " + describe(error))
    namespace = {"__name__": "solution"}
    try:
        exec(solution, namespace)
    except BaseException as error:
        traceback.print_exc()
        return outcome("failed", "the solution failed while loading: " + describe(error))
    if entry_point and not callable(namespace.get(entry_point)):
        return outcome("failed", f"the solution does not define a function {entry_point!r}")
    try:
        exec(tests, namespace)
        if entry_point:
            check = namespace.get("check")
            if not callable(check):
                return outcome("error", f"the tests define no check(candidate) to call with {entry_point!r}")
            check(namespace[entry_point])
    except BaseException as error:
        traceback.print_exc()
        return outcome("failed", describe(error))
    return outcome("passed", "all tests passed")


def main(entry_point):
    nonce = sys.stdin.readline().strip()
    report = os.dup(1)
    os.dup2(2, 1)
    result = verdict(entry_point)
    for stream in {sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__}:
        try:
            stream.flush()
        except BaseException:
            pass
    os.write(report, (nonce + json.dumps(result) + "\n").encode())
    # Straight out: atexit hooks and finalizers belong to the candidate and must not change the verdict.
    os._exit(0)
'''


class TestRun(BaseModel):
    """Outcome of one solution against its tests. `error` means the tests themselves could not run, so
    the solution was not judged; `timed_out` is kept apart from `failed` for the same reason."""

    model_config = ConfigDict(frozen=True)
    __test__: ClassVar[bool] = False  # not a pytest test class

    passed: bool
    outcome: TestOutcome
    detail: str
    result: SandboxResult


def run_tests(
    solution: str,
    tests: str,
    *,
    entry_point: str | None = None,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    allow_unisolated: bool = False,
) -> TestRun:
    """Run `tests` against `solution` in the sandbox; with `entry_point`, also call `check(<entry_point>)`."""
    nonce, files, harness = _program(solution, tests, entry_point)
    result = run_python(harness, files=files, stdin=nonce + "\n", timeout_s=timeout_s, memory_mb=memory_mb,
                        allow_unisolated=allow_unisolated)
    return _judged(result, nonce, timeout_s)


async def arun_tests(
    solution: str,
    tests: str,
    *,
    entry_point: str | None = None,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    allow_unisolated: bool = False,
) -> TestRun:
    """`run_tests` without blocking the event loop."""
    nonce, files, harness = _program(solution, tests, entry_point)
    result = await arun_python(harness, files=files, stdin=nonce + "\n", timeout_s=timeout_s,
                               memory_mb=memory_mb, allow_unisolated=allow_unisolated)
    return _judged(result, nonce, timeout_s)


def _program(solution: str, tests: str, entry_point: str | None) -> tuple[str, dict[str, str], str]:
    if entry_point is not None and not entry_point.isidentifier():
        raise ValueError(f"entry_point must be a Python identifier such as 'has_close_elements' (got {entry_point!r})")
    nonce = f"synthgraph-verdict-{secrets.token_hex(16)}:"
    harness = f"{_HARNESS}\nmain({entry_point!r})\n"
    return nonce, {"solution.py": solution, "tests.py": tests}, harness


def _judged(result: SandboxResult, nonce: str, timeout_s: float) -> TestRun:
    outcome, detail = _outcome(result, nonce, timeout_s)
    return TestRun(passed=outcome == "passed", outcome=outcome, detail=detail, result=result)


def _outcome(result: SandboxResult, nonce: str, timeout_s: float) -> tuple[TestOutcome, str]:
    reports = [line[len(nonce):] for line in result.stdout.splitlines() if line.startswith(nonce)]
    if reports and result.returncode == 0:
        report = json.loads(reports[-1])
        return report["outcome"], report["detail"]
    if result.timed_out:
        return "timed_out", f"timed out after {timeout_s:g}s"
    last_error = next((line.strip() for line in reversed(result.stderr.splitlines()) if line.strip()), "")
    if result.killed_by:
        why = f"killed by {result.killed_by}"
    else:
        why = f"the program exited with code {result.returncode} before the tests finished"
    return "failed", f"{why}: {last_error[:300]}" if last_error else why
