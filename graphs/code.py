"""Verified code: propose -> check the tests -> solve k ways -> run the tests -> critique -> (revise) -> accept.

OSS-Instruct / Case2Code style, verified by execution: from a seed (a topic, a function signature, or a code
snippet to draw on) the proposer writes a problem, a reference solution and assert tests. The tests are tested
before anyone solves against them: the reference must pass them in the sandbox, and two trivially wrong
solutions (one returning None, one raising) must fail them. Human-eval style seeds bring their own prompt and
tests and skip the proposer. k solver branches write solutions independently, each runs against the tests in
the sandbox, and the critic scores the passing ones for readability and generality. When none passes, each
revision branch gets an earlier attempt and its failing test output, for a bounded number of rounds.
Every attempt becomes a sample: accepted ones are training data, the rest are preference negatives.

A solution's `tests` verdict is `passed` or `failed` (wrong result, crash, does not compile, memory kill), and
`unchecked` when its run timed out or the tests themselves could not run: slow is not the same as wrong.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgraph.agents.code_roles import (CodeCritic, CodeProposer, CodeRevision, CodeSolver, Critique,
                                          extract_solution, signature_of)
from synthgraph.agents import code_roles
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import (CriticSettings, ProposerSettings, RecipeBase, ReviseSettings, SeedBase,
                                       SolverSettings, VerifierSettings)
from synthgraph.graphs.rows import check_rows, critic_row, sample_row, unjudged_row
from synthgraph.store.db import Store
from synthgraph.store.rows import CheckOutcome, MessageRow, VerdictRow
from synthgraph.tools.code_tests import TestOutcome, TestRun, arun_tests


# ------------------------------------------------------------------------------------------------ recipe


class CodeProposerSettings(ProposerSettings):
    max_tokens: int = Field(1024, ge=1, le=32768)


class CodeSolverSettings(SolverSettings):
    max_tokens: int = Field(1024, ge=1, le=32768)


class CodeRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: CodeProposerSettings = Field(default_factory=CodeProposerSettings)
    solver: CodeSolverSettings = Field(default_factory=CodeSolverSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)


class CodeSeed(SeedBase):
    """A code seed: something to write a new problem from (a `topic`, a function `signature`, a code `snippet`
    to draw on, OSS-Instruct style), or a human-eval style problem that brings its own `prompt` (a function
    stub with its docstring), `test` (asserts, or a `check(candidate)` function) and `entry_point`, with an
    optional `canonical_solution` (the body that completes the prompt)."""

    task_id: str | None = None
    topic: str | None = None
    signature: str | None = None
    snippet: str | None = None
    prompt: str | None = None
    test: str | None = None
    entry_point: str | None = None
    canonical_solution: str | None = None

    @property
    def seed_id(self) -> str:
        return self.id or self.task_id or super().seed_id

    @model_validator(mode="after")
    def _inspiration_or_problem(self):
        if self.prompt is None and not (self.topic or self.signature or self.snippet):
            raise ValueError("a code seed needs a `topic`, `signature` or `snippet` (to propose a new problem) "
                             "or a `prompt` with its `test` and `entry_point` (human-eval style)")
        if self.prompt is not None and (self.test is None or self.entry_point is None):
            raise ValueError("a seed with a `prompt` needs its `test` and `entry_point`")
        if self.entry_point is not None and not self.entry_point.isidentifier():
            raise ValueError(f"entry_point must be a Python function name (got {self.entry_point!r})")
        return self

    @property
    def generative(self) -> bool:
        return self.prompt is None


class CodeRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = CodeSeed

    graph: Literal["code"]
    roles: CodeRoles = Field(default_factory=CodeRoles)
    revise: ReviseSettings = Field(default_factory=ReviseSettings)
    verifier: VerifierSettings = Field(default_factory=VerifierSettings)



class Problem(BaseModel):
    text: str                             # what the solver is asked: the samples' user turn
    entry_point: str
    tests: str
    source: Literal["proposed", "seed"]
    reference: str | None = None          # a complete reference program; None when a seed brings none
    prelude: str = ""                     # code each solution is appended to: a human-eval prompt (imports, helpers)


class ExecutionLog(BaseModel):
    """One sandboxed test run, as kept in the store."""

    outcome: TestOutcome
    detail: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    killed_by: str | None = None

    @classmethod
    def of(cls, run: TestRun) -> ExecutionLog:
        result = run.result
        return cls(outcome=run.outcome, detail=run.detail, returncode=result.returncode, stdout=result.stdout[-2000:],
                   stderr=result.stderr[-2000:], duration_s=result.duration_s, killed_by=result.killed_by)


class Attempt(BaseModel):
    key: str                              # r<round>k<branch>: stable, so sample ids survive a rerun
    round: int
    revision: CodeRevision | None = None      # the earlier code and test output this attempt was revised from
    reply: str | None = None              # the solver's whole reply (reasoning + code block)
    code: str | None = None
    error: str | None = None              # the solver's output was refused on every try
    execution: ExecutionLog | None = None
    critique: Critique | None = None
    critique_error: str | None = None


class CodeState(TypedDict, total=False):
    seed: CodeSeed
    problem: Problem | None
    problem_error: str | None             # no usable problem, or its tests did not pass their own checks
    rejected_by: Literal["reference_tests", "trivial_solution"] | None
    test_checks: dict[str, ExecutionLog]  # reference / returns_none / raises -> how it fared on the tests
    attempts: Annotated[list[Attempt], merge_by_key]
    revisions: int
    briefs: list[CodeRevision]                # what the next revision round's branches are shown
    outcome: Literal["accepted", "rejected"]


class SolveTask(TypedDict):
    problem: Problem
    key: str
    round: int
    revision: CodeRevision | None


@dataclass
class CodeContext:
    """The graph's run-scoped dependencies: tests pass fakes, the CLI passes real models."""

    proposer: CodeProposer
    solver: CodeSolver
    critic: CodeCritic
    samples: int = 4
    revise_rounds: int = 1
    critic_threshold: float = 6
    sandbox_timeout_s: float = 10
    sandbox_memory_mb: int = 512

    async def run_tests(self, problem: Problem, code: str) -> TestRun:
        # human-eval tests are a `check(candidate)` to call with the entry point; plain asserts run as they are
        entry_point = problem.entry_point if "def check(" in problem.tests else None
        return await arun_tests(solution_program(problem, code), problem.tests, entry_point=entry_point,
                                timeout_s=self.sandbox_timeout_s, memory_mb=self.sandbox_memory_mb)


def solution_program(problem: Problem, code: str) -> str:
    """What runs as solution.py: the code, after the problem's prelude. A human-eval prompt ends in a stub whose
    body is its docstring, so a full `def` redefines it and an indented body completes it, as in human-eval."""
    if not problem.prelude:
        return code
    if not code[:1].isspace() and f"def {problem.entry_point}" not in code:
        code = "\n".join("    " + line for line in code.splitlines())
    return problem.prelude.rstrip("\n") + "\n" + code + "\n"


TRIVIAL_SOLUTIONS = {
    "returns_none": "def {f}(*args, **kwargs):\n    return None\n",
    "raises": "def {f}(*args, **kwargs):\n    raise NotImplementedError\n",
}


# ------------------------------------------------------------------------------------------------ nodes


async def propose(state: CodeState, runtime: Runtime[CodeContext]) -> dict:
    seed = state["seed"]
    if seed.prompt is not None:
        return {"problem": problem_from_seed(seed)}
    try:
        draft = await runtime.context.proposer.write_problem(topic=seed.topic, signature=seed.signature,
                                                             snippet=seed.snippet, entry_point=seed.entry_point)
    except ModelOutputError as exc:
        return {"problem": None, "problem_error": str(exc)}
    text = draft.problem
    if f"{draft.entry_point}(" not in text:
        text += f"\n\nWrite it as a Python function: `{signature_of(draft.solution, draft.entry_point)}`."
    return {"problem": Problem(text=text, entry_point=draft.entry_point, tests=draft.tests, source="proposed",
                               reference=draft.solution)}


def problem_from_seed(seed: CodeSeed) -> Problem:
    text = f"Complete this Python function:\n```python\n{seed.prompt.strip()}\n```"
    reference = seed.prompt + seed.canonical_solution if seed.canonical_solution else None
    return Problem(text=text, entry_point=seed.entry_point, tests=seed.test, source="seed", reference=reference,
                   prelude=seed.prompt)


def route_after_propose(state: CodeState) -> Literal["check_tests", "reject"]:
    return "reject" if state.get("problem") is None else "check_tests"


async def check_tests(state: CodeState, runtime: Runtime[CodeContext]) -> dict:
    """Tests of the tests: the reference passes them, trivially wrong solutions do not."""
    problem, ctx = state["problem"], runtime.context
    candidates = {name: code.format(f=problem.entry_point) for name, code in TRIVIAL_SOLUTIONS.items()}
    if problem.reference is not None:
        # the reference program is complete: run it without the prelude
        candidates["reference"] = problem.reference
    standalone = problem.model_copy(update={"prelude": ""})
    runs = await asyncio.gather(*(
        ctx.run_tests(standalone if name == "reference" else problem, code) for name, code in candidates.items()))
    checks = {name: ExecutionLog.of(run) for name, run in zip(candidates, runs)}
    broken = next((log for log in checks.values() if log.outcome == "error"), None)
    if broken is not None:
        return {"test_checks": checks, "rejected_by": "reference_tests",
                "problem_error": f"the tests cannot run: {broken.detail}"}
    reference = checks.get("reference")
    if reference is not None and reference.outcome != "passed":
        return {"test_checks": checks, "rejected_by": "reference_tests",
                "problem_error": f"the reference solution does not pass its tests: {reference.detail}"}
    for name, what in [("returns_none", "returns None"), ("raises", "raises an exception")]:
        if checks[name].outcome == "passed":
            return {"test_checks": checks, "rejected_by": "trivial_solution",
                    "problem_error": f"under-tested: a solution that {what} passes the tests"}
    return {"test_checks": checks}


def fan_out(state: CodeState, runtime: Runtime[CodeContext]) -> list[Send] | Literal["reject"]:
    if state.get("problem_error"):
        return "reject"
    round_, briefs = state.get("revisions", 0), state.get("briefs") or []
    return [
        Send("solve", SolveTask(problem=state["problem"], key=f"r{round_}k{i}", round=round_,
                                revision=briefs[i % len(briefs)] if briefs else None))
        for i in range(runtime.context.samples)
    ]


async def solve(task: SolveTask, runtime: Runtime[CodeContext]) -> dict:
    problem = task["problem"]
    attempt = Attempt(key=task["key"], round=task["round"], revision=task["revision"])
    try:
        attempt.reply = await runtime.context.solver.solve(problem.text, entry_point=problem.entry_point,
                                                           completes_stub=bool(problem.prelude),
                                                           revision=task["revision"], subject=attempt.key)
        attempt.code = extract_solution(attempt.reply, problem.entry_point, completes_stub=bool(problem.prelude))
    except ModelOutputError as exc:
        attempt.error = str(exc)
    return {"attempts": [attempt]}


async def verify(state: CodeState, runtime: Runtime[CodeContext]) -> dict:
    problem = state["problem"]
    pending = [a for a in state["attempts"] if a.code is not None and a.execution is None]
    runs = await asyncio.gather(*(runtime.context.run_tests(problem, a.code) for a in pending))
    return {"attempts": [a.model_copy(update={"execution": ExecutionLog.of(r)}) for a, r in zip(pending, runs)]}


def _passed(state: CodeState) -> list[Attempt]:
    return [a for a in state["attempts"] if a.execution is not None and a.execution.outcome == "passed"]


def route_after_verify(state: CodeState, runtime: Runtime[CodeContext]) -> Literal["judge", "revise", "reject"]:
    if _passed(state):
        return "judge"
    revisable = any(a.code is not None for a in state["attempts"])
    if revisable and state.get("revisions", 0) < runtime.context.revise_rounds:
        return "revise"
    return "reject"


async def judge(state: CodeState, runtime: Runtime[CodeContext]) -> dict:
    critic, problem = runtime.context.critic, state["problem"]
    pending = [a for a in _passed(state) if a.critique is None and a.critique_error is None]

    async def judge_one(attempt: Attempt) -> Attempt:
        try:
            critique = await critic.judge(problem=problem.text, solution=attempt.reply, subject=attempt.key)
            return attempt.model_copy(update={"critique": critique})
        except ModelOutputError as exc:
            return attempt.model_copy(update={"critique_error": str(exc)})

    return {"attempts": list(await asyncio.gather(*(judge_one(a) for a in pending)))}


def critic_passed(critique: Critique, threshold: float) -> bool:
    return critique.score >= threshold


def accepted(attempt: Attempt, threshold: float) -> bool:
    """The accept rule, the one place it is written (the router and the sample's status both read it): the code
    passed the tests and the critic scored it at least `threshold`."""
    return (attempt.execution is not None and attempt.execution.outcome == "passed"
            and attempt.critique is not None and critic_passed(attempt.critique, threshold))


def route_after_judge(state: CodeState, runtime: Runtime[CodeContext]) -> Literal["accept", "reject"]:
    threshold = runtime.context.critic_threshold
    return "accept" if any(accepted(a, threshold) for a in state["attempts"]) else "reject"


def revise(state: CodeState) -> dict:
    """The failing attempts of the last round, each with its test output, for the next round's branches."""
    round_ = state.get("revisions", 0)
    failed = [a for a in sorted(state["attempts"], key=branch)
              if a.round == round_ and a.code is not None and a.execution is not None]
    return {"briefs": [CodeRevision(previous=a.code, feedback=test_feedback(a.execution)) for a in failed],
            "revisions": round_ + 1}


def branch(attempt: Attempt) -> tuple[int, int]:
    return attempt.round, int(attempt.key.rpartition("k")[2])


def test_feedback(execution: ExecutionLog) -> str:
    """What the solver is told about a failed run: the harness's verdict and the end of the traceback."""
    stderr = execution.stderr.strip()
    tail = "\n".join(stderr.splitlines()[-12:])[-1200:]
    return f"{execution.detail}\n{tail}".strip() if tail else execution.detail


def accept(state: CodeState) -> dict:
    return {"outcome": "accepted"}


def reject(state: CodeState) -> dict:
    return {"outcome": "rejected"}


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(CodeState, context_schema=CodeContext)
    g.add_node(propose, retry_policy=model_retry)
    g.add_node(check_tests)
    g.add_node(solve, input_schema=SolveTask, retry_policy=model_retry)
    g.add_node(verify)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(revise)
    g.add_node(accept)
    g.add_node(reject)
    g.add_edge(START, "propose")
    g.add_conditional_edges("propose", on_loop(route_after_propose), ["check_tests", "reject"])
    g.add_conditional_edges("check_tests", on_loop(fan_out), ["solve", "reject"])
    g.add_edge("solve", "verify")
    g.add_conditional_edges("verify", on_loop(route_after_verify), ["judge", "revise", "reject"])
    g.add_conditional_edges("judge", on_loop(route_after_judge), ["accept", "reject"])
    g.add_conditional_edges("revise", on_loop(fan_out), ["solve", "reject"])
    g.add_edge("accept", END)
    g.add_edge("reject", END)
    return g



# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: CodeRecipe, pool: ModelPool, store: Store | None = None) -> CodeContext:
    prompts = FAMILY.prompt_set(recipe)
    roles = recipe.roles
    return CodeContext(
        proposer=CodeProposer(pool.client(recipe.role_model("proposer")), roles.proposer.sampling(), prompts=prompts),
        solver=CodeSolver(pool.client(recipe.role_model("solver")), roles.solver.sampling(), prompts=prompts),
        critic=CodeCritic(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
        samples=roles.solver.samples,
        revise_rounds=recipe.revise.rounds,
        critic_threshold=roles.critic.threshold,
        sandbox_timeout_s=recipe.verifier.sandbox_timeout_s,
        sandbox_memory_mb=recipe.verifier.sandbox_memory_mb,
    )


def initial_state(seed: CodeSeed) -> CodeState:
    return {"seed": seed, "attempts": [], "revisions": 0}


# ------------------------------------------------------------------------------------- state -> rows

TESTS_VERDICT = {"passed": "passed", "failed": "failed", "timed_out": "unchecked", "error": "unchecked"}


def attempt_verdict(attempt: Attempt, threshold: float) -> tuple[str, str | None]:
    """(status, reason) of one attempt as a sample."""
    if attempt.error is not None:
        return "error", attempt.error
    if attempt.execution is None:
        return "error", "never ran against the tests"
    execution = attempt.execution
    if execution.outcome == "failed":
        return "rejected", f"failed the tests: {execution.detail}"
    if execution.outcome == "timed_out":
        return "rejected", f"tests could not finish: {execution.detail}"
    if execution.outcome == "error":
        return "rejected", f"tests could not run: {execution.detail}"
    if attempt.critique_error is not None:
        return "rejected", f"critic gave no usable verdict: {attempt.critique_error}"
    if attempt.critique is None:
        return "rejected", "passed the tests but not judged"
    if not accepted(attempt, threshold):
        return "rejected", f"critic score {attempt.critique.score} < {threshold:g}: {attempt.critique.reason}"
    return "accepted", None


def _problem_verdicts(state: CodeState, sample_id: str) -> list[VerdictRow]:
    checks, rejected_by = state.get("test_checks") or {}, state.get("rejected_by")
    verdicts = []
    if "reference" in checks or rejected_by == "reference_tests":
        failed = rejected_by == "reference_tests"
        reference = checks.get("reference")
        verdicts.append(VerdictRow(
            sample_id=sample_id, verifier="reference_tests", outcome="failed" if failed else "passed",
            score=0.0 if failed else 1.0,
            detail=state["problem_error"] if failed else reference.detail))
    if rejected_by != "reference_tests" and {"returns_none", "raises"} <= checks.keys():
        failed = rejected_by == "trivial_solution"
        verdicts.append(VerdictRow(
            sample_id=sample_id, verifier="trivial_solution", outcome="failed" if failed else "passed",
            score=0.0 if failed else 1.0,
            detail=state["problem_error"] if failed else "a solution returning None and one raising both fail"))
    return verdicts


def to_rows(state: CodeState, *, run_id: str, seed_id: str, context: CodeContext
            ) -> Rows:
    """The samples, chat turns and verdicts of one finished graph instance, plus attempt key -> sample id."""
    threshold = context.critic_threshold
    problem = state.get("problem")
    checks = state.get("test_checks") or {}
    problem_fields = {} if problem is None else {
        "problem": problem.text, "entry_point": problem.entry_point, "tests": problem.tests,
        "reference": problem.reference, "problem_source": problem.source,
        "reference_check": checks["reference"].outcome if "reference" in checks else "none",
    }
    samples, messages, verdicts, sample_ids = [], [], [], {}
    if state.get("problem_error"):
        sample = sample_row(
            run_id, seed_id, "problem", kind="code_problem", status="rejected" if problem is not None else "error",
            reason=state["problem_error"],
            payload={**problem_fields, "rejected_by": state.get("rejected_by"),
                     "test_checks": {name: log.model_dump() for name, log in checks.items()}})
        samples.append(sample)
        sample_id = sample_ids["problem"] = sample.sample_id
        if problem is not None:
            messages.append(MessageRow(sample_id=sample_id, turn=0, role="user", content=problem.text))
            verdicts.extend(_problem_verdicts(state, sample_id))
        return Rows(samples, messages, verdicts, sample_ids)
    for attempt in sorted(state.get("attempts", []), key=branch):
        status, reason = attempt_verdict(attempt, threshold)
        sample = sample_row(
            run_id, seed_id, attempt.key, kind="code_solution", status=status, reason=reason,
            score=attempt.critique.score if attempt.critique else None,
            payload={**problem_fields, "attempt": attempt.key, "round": attempt.round,
                     "feedback": attempt.revision.feedback if attempt.revision else None,
                     "revised_code": attempt.revision.previous if attempt.revision else None,
                     "code": attempt.code,
                     "execution": attempt.execution.model_dump() if attempt.execution else None})
        samples.append(sample)
        sample_id = sample_ids[attempt.key] = sample.sample_id
        messages.append(MessageRow(sample_id=sample_id, turn=0, role="user", content=problem.text))
        if attempt.reply is not None:
            messages.append(MessageRow(sample_id=sample_id, turn=1, role="assistant", content=attempt.reply))
        if attempt.execution is not None:
            outcome = TESTS_VERDICT[attempt.execution.outcome]
            verdicts.extend(check_rows(sample_id, {"tests": CheckOutcome(outcome, attempt.execution.detail)}))
        if attempt.critique is not None:
            verdicts.append(critic_row(sample_id, score=attempt.critique.score, detail=attempt.critique.reason,
                                       passed=critic_passed(attempt.critique, threshold)))
        elif attempt.critique_error is not None:
            verdicts.append(unjudged_row(sample_id, attempt.critique_error))
    return Rows(samples, messages, verdicts, sample_ids)


FAMILY = Family(
    name="code", recipe=CodeRecipe, build=build, make_context=make_context, initial_state=initial_state,
    to_rows=to_rows,
    prompts=("code_proposer", "code_solver", "code_critic"),
    prompt_text=code_roles.PROMPT_TEXT, studio_recipe="demos/code.yaml",
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
