"""Verified reasoning traces: propose -> corroborate -> solve k ways -> verify -> (diagnose -> revise) -> critique,
whose verdict accepts or rejects the seed. A seed with a gold problem starts at the solvers.

The verified rejection-sampling loop of STaR / RFT / ReST-EM with program-of-thought references: the proposer
writes a problem and a program whose printed output is the reference answer (or a seed brings a gold answer),
and a second program written from the problem text alone must print the same answer (else the solvers'
majority must reach it; a reference neither corroborates is rejected as `unvalidated_reference`). k solver
branches answer independently — in chain of thought, or tool-integrated (ToRA / NuminaMath-TIR: reasoning
interleaved with Python blocks run in the sandbox) — math-verify checks each final answer against the
reference, and the critic scores the reasoning of the verified ones. When none verifies, the critic diagnoses a
failed attempt and the solver tries again with that feedback, for a bounded number of rounds. Every attempt
becomes a sample: accepted ones are training data, rejected ones are tomorrow's preference negatives.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgraph.agents import reasoning_roles
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.agents.reasoning_roles import (PYTHON_TOOL, Critic, Critique, ProblemDraft, Proposer, ReferenceWriter,
                                               Solver, ToolSolver, ToolStep)
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import (CriticSettings, ProposerSettings, RecipeBase, ReviseSettings, SeedBase,
                                       SolverSettings, VerifierSettings, changed)
from synthgraph.graphs.rows import check_rows, critic_row, sample_row, unjudged_row
from synthgraph.store.db import Store
from synthgraph.store.rows import CheckOutcome, MessageRow, VerdictRow
from synthgraph.tools.math_answers import AnswerCheck, acheck_answer
from synthgraph.tools.sandbox import arun_python


# ------------------------------------------------------------------------------------------------ recipe


class ReasoningSolverSettings(SolverSettings):
    mode: Literal["cot", "tir", "both"] = Field(
        "cot", description="cot: chain of thought; tir: reasoning interleaved with Python run in the sandbox "
                           "(ToRA); both: `samples` solutions of each kind per problem")
    tir_steps: int = Field(4, ge=1, le=16, description="code blocks one TIR solution may run")
    tir_sandbox_s: float = Field(30, gt=0, le=600,
                                 description="sandbox seconds all blocks of one TIR solution may use together "
                                             "(each run also within the verifier's timeout)")

    @model_validator(mode="after")
    def _tir_settings_need_tir(self):
        if self.mode == "cot" and (set_ := changed(self, ["tir_steps", "tir_sandbox_s"])):
            raise ValueError(f"{' and '.join(set_)} {'bound' if len(set_) > 1 else 'bounds'} the code of tir "
                             f"solutions, and mode: cot writes none: remove {'them' if len(set_) > 1 else 'it'} "
                             "or use mode: tir or both")
        return self


class ReasoningRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: ProposerSettings = Field(default_factory=ProposerSettings)
    solver: ReasoningSolverSettings = Field(default_factory=ReasoningSolverSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)


class Seed(SeedBase):
    """A reasoning seed: a topic to write a new problem about, or a problem with a known gold answer."""

    topic: str | None = None
    style: str | None = None
    example: str | None = None
    problem: str | None = None
    answer: str | None = None

    @model_validator(mode="after")
    def _topic_or_problem(self):
        if self.topic is None and self.problem is None:
            raise ValueError("a seed needs a `topic` (to propose a new problem) or a `problem` (with `answer`)")
        if self.problem is not None and self.answer is None:
            raise ValueError("a seed with a `problem` needs its gold `answer`")
        return self

    @property
    def generative(self) -> bool:
        return self.problem is None


class ReasoningRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = Seed

    graph: Literal["reasoning"]
    roles: ReasoningRoles = Field(default_factory=ReasoningRoles)
    revise: ReviseSettings = Field(default_factory=ReviseSettings)
    verifier: VerifierSettings = Field(default_factory=VerifierSettings)
    validate_references: bool = Field(
        True, description="a proposed problem's reference must be corroborated by a second program written from "
                          "the problem alone, or by the solvers' majority; else the problem is rejected")


class Problem(BaseModel):
    text: str
    source: Literal["proposed", "gold"]
    reference: str | None = None          # None when the reference program failed
    program: str | None = None
    program_output: str | None = None


class Validation(BaseModel):
    """How a proposed problem's reference was corroborated, or why it was not."""

    status: Literal["corroborated", "pending", "unvalidated"]
    by: Literal["program", "solvers"] | None = None
    second_program: str | None = None
    second_answer: str | None = None      # what the second program printed (None: it wrote or ran nothing usable)
    solver_answers: list[str | None] = Field(default_factory=list)
    detail: str = ""


class Attempt(BaseModel):
    key: str                              # r<round>k<branch> (chain of thought) or r<round>t<branch> (TIR): stable
    round: int
    mode: Literal["cot", "tir"] = "cot"
    feedback: str | None = None           # the critic's diagnosis this attempt was revised with
    solution: str | None = None           # the whole reply (cot) or the closing message with the answer (tir)
    steps: list[ToolStep] = Field(default_factory=list)   # tir: the code runs before the closing message
    stop_reason: str | None = None        # tir: answered, step_limit or time_limit
    error: str | None = None              # the solver's output was refused on every try
    check: AnswerCheck | None = None
    critique: Critique | None = None
    critique_error: str | None = None

    def transcript(self) -> str | None:
        """The solution as one text, code and outputs included: what the critic reads."""
        if self.solution is None or not self.steps:
            return self.solution
        parts = [f"{s.text}\n```python\n{s.code}\n```\n```output\n{s.output}\n```".strip() for s in self.steps]
        return "\n\n".join([*parts, self.solution])


class TraceState(TypedDict, total=False):
    seed: Seed
    problem: Problem | None
    problem_error: str | None             # the proposer gave no usable problem, or its program failed
    validation: Validation | None         # proposed problems: how the reference was corroborated
    attempts: Annotated[list[Attempt], merge_by_key]
    revisions: int
    feedback: str | None
    outcome: Literal["accepted", "rejected"]


class SolveTask(TypedDict):
    problem: Problem
    key: str
    round: int
    feedback: str | None
    mode: Literal["cot", "tir"]


@dataclass
class ReasoningContext:
    """The graph's run-scoped dependencies: tests pass fakes, the CLI passes real models."""

    proposer: Proposer
    solver: Solver
    critic: Critic
    tool_solver: ToolSolver | None = None
    reference_writer: ReferenceWriter | None = None   # None: proposed references are taken as they are
    modes: tuple[Literal["cot", "tir"], ...] = ("cot",)
    samples: int = 4
    revise_rounds: int = 1
    critic_threshold: float = 6
    sandbox_timeout_s: float = 10
    sandbox_memory_mb: int = 512


# ------------------------------------------------------------------------------------------------ nodes


PROGRAM_PRELUDE = "import math\nfrom fractions import Fraction\n"


PROPOSER_DRAFTS = 2   # a draft whose program fails or prints no single answer gets one fresh draft


async def propose(state: TraceState, runtime: Runtime[ReasoningContext]) -> dict:
    seed = state["seed"]
    for _ in range(PROPOSER_DRAFTS):
        try:
            draft = await runtime.context.proposer.write_problem(topic=seed.topic, style=seed.style, example=seed.example)
        except ModelOutputError as exc:
            return {"problem": None, "problem_error": str(exc)}
        outcome = await run_reference(draft, runtime.context)
        if not outcome.get("problem_error"):
            break
    return outcome


async def run_reference(draft: ProblemDraft, ctx: ReasoningContext) -> dict:
    """The problem with the answer its program prints, or with why the program gave none."""
    # The usual imports up front: a forgotten `from fractions import Fraction` is not a wrong reference.
    run = await arun_python(PROGRAM_PRELUDE + draft.program, timeout_s=ctx.sandbox_timeout_s,
                            memory_mb=ctx.sandbox_memory_mb)
    problem = Problem(text=draft.problem, source="proposed", program=draft.program, program_output=run.stdout[-2000:])
    if run.timed_out:
        return {"problem": problem, "problem_error": f"reference program timed out after {ctx.sandbox_timeout_s}s"}
    if run.returncode != 0:
        last_error = (run.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"problem": problem, "problem_error": f"reference program failed (exit {run.returncode}): {last_error}"}
    reference = reference_from_output(run.stdout)
    if reference is None:
        return {"problem": problem, "problem_error": f"reference program printed no single answer: {run.stdout[-200:]!r}"}
    return {"problem": problem.model_copy(update={"reference": reference})}


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def reference_from_output(stdout: str) -> str | None:
    """The answer a reference program printed: its last line, or the one number in a last line of prose
    ("The remainder is 3"). A line with several numbers is ambiguous and gives None."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    if not re.search(r"[A-Za-z]{2,}", last.replace("sqrt", "").replace("frac", "").replace("pi", "")):
        return last
    numbers = _NUMBER.findall(last)
    return numbers[0].replace(",", "") if len(numbers) == 1 else None


def route_from_start(state: TraceState, runtime: Runtime[ReasoningContext]) -> list[Send] | Literal["propose"]:
    """A gold seed brings its problem (see `initial_state`), so its solvers start at once: a proposer step that
    would only copy the problem costs a graph step, and each step is ~5% of a seed's orchestration CPU."""
    return "propose" if state.get("problem") is None else fan_out(state, runtime)


def route_after_propose(state: TraceState, runtime: Runtime[ReasoningContext]
                        ) -> list[Send] | Literal["corroborate", "reject"]:
    if state.get("problem_error"):
        return "reject"
    if state["problem"].source == "proposed" and runtime.context.reference_writer is not None:
        return "corroborate"
    return fan_out(state, runtime)


async def corroborate(state: TraceState, runtime: Runtime[ReasoningContext]) -> dict:
    """A second program, written from the problem text alone, must print the reference answer. When it does not
    (or gives no answer), the problem is still solved, and the solvers' majority decides (see `verify`)."""
    ctx, problem = runtime.context, state["problem"]
    try:
        program = await ctx.reference_writer.write_program(problem.text, subject="reference")
    except ModelOutputError as exc:
        return {"validation": Validation(status="pending", detail=f"no second program: {exc}")}
    run = await arun_python(PROGRAM_PRELUDE + program, timeout_s=ctx.sandbox_timeout_s, memory_mb=ctx.sandbox_memory_mb)
    answer = reference_from_output(run.stdout) if run.returncode == 0 and not run.timed_out else None
    agrees = answer is not None and (await acheck_answer(f"#### {answer}", problem.reference)).outcome == "match"
    return {"validation": Validation(
        status="corroborated" if agrees else "pending", by="program" if agrees else None, second_program=program,
        second_answer=answer,
        detail="a second program printed the same answer" if agrees else
        f"a second program printed {answer!r}, the reference is {problem.reference!r}" if answer is not None else
        f"the second program gave no answer (exit {run.returncode}{', timed out' if run.timed_out else ''})")}


def fan_out(state: TraceState, runtime: Runtime[ReasoningContext]) -> list[Send] | Literal["reject"]:
    if state.get("problem_error"):
        return "reject"
    round_ = state.get("revisions", 0)
    return [
        Send("solve", SolveTask(problem=state["problem"], key=f"r{round_}{'k' if mode == 'cot' else 't'}{i}",
                                round=round_, feedback=state.get("feedback"), mode=mode))
        for mode in runtime.context.modes for i in range(runtime.context.samples)
    ]


async def solve(task: SolveTask, runtime: Runtime[ReasoningContext]) -> dict:
    attempt = Attempt(key=task["key"], round=task["round"], feedback=task["feedback"], mode=task["mode"])
    try:
        if task["mode"] == "tir":
            trace = await runtime.context.tool_solver.solve(task["problem"].text, feedback=task["feedback"],
                                                            subject=attempt.key)
            attempt.solution, attempt.steps, attempt.stop_reason = trace.final, trace.steps, trace.stop_reason
        else:
            attempt.solution = await runtime.context.solver.solve(task["problem"].text, feedback=task["feedback"],
                                                                  subject=attempt.key)
    except ModelOutputError as exc:
        attempt.error = str(exc)
    return {"attempts": [attempt]}


def solvers_corroborate(checks: list[AnswerCheck | None]) -> bool:
    """The solvers' majority rule: more than half of a round's attempts (failed ones included) match the reference."""
    return 2 * sum(c is not None and c.outcome == "match" for c in checks) > len(checks)


async def verify(state: TraceState) -> dict:
    reference = state["problem"].reference
    unchecked = [a for a in state["attempts"] if a.solution is not None and a.check is None]
    checks = await asyncio.gather(*(acheck_answer(a.solution, reference) for a in unchecked))
    update: dict = {"attempts": [a.model_copy(update={"check": c}) for a, c in zip(unchecked, checks)]}
    validation = state.get("validation")
    if validation is not None and validation.status == "pending":
        # The second program disagreed (or gave nothing): the first round's solvers decide, by majority.
        checked = {a.key: c for a, c in zip(unchecked, checks)}
        first_round = [checked.get(a.key, a.check) for a in state["attempts"] if a.round == 0]
        answers = [c.extracted if c is not None else None for c in first_round]
        if solvers_corroborate(first_round):
            update["validation"] = validation.model_copy(update={
                "status": "corroborated", "by": "solvers", "solver_answers": answers,
                "detail": f"{validation.detail}; the solvers' majority reached the reference"})
        else:
            update["validation"] = validation.model_copy(update={
                "status": "unvalidated", "solver_answers": answers,
                "detail": f"{validation.detail}; the solvers' majority did not reach it either"})
    return update


def unvalidated(state: TraceState) -> bool:
    validation = state.get("validation")
    return validation is not None and validation.status == "unvalidated"


def _verified(state: TraceState) -> list[Attempt]:
    return [a for a in state["attempts"] if a.check is not None and a.check.outcome == "match"]


def route_after_verify(state: TraceState, runtime: Runtime[ReasoningContext]) -> Literal["judge", "diagnose", "reject"]:
    if unvalidated(state):
        return "reject"
    if _verified(state):
        return "judge"
    revisable = any(a.solution is not None for a in state["attempts"])
    if revisable and state.get("revisions", 0) < runtime.context.revise_rounds:
        return "diagnose"
    return "reject"


async def judge(state: TraceState, runtime: Runtime[ReasoningContext]) -> dict:
    critic, problem = runtime.context.critic, state["problem"]
    pending = [a for a in _verified(state) if a.critique is None and a.critique_error is None]

    async def judge_one(attempt: Attempt) -> Attempt:
        try:
            critique = await critic.judge(problem=problem.text, solution=attempt.transcript(),
                                          reference=problem.reference, subject=attempt.key)
            return attempt.model_copy(update={"critique": critique})
        except ModelOutputError as exc:
            return attempt.model_copy(update={"critique_error": str(exc)})

    judged = list(await asyncio.gather(*(judge_one(a) for a in pending)))
    # The seed's verdict is written with the critiques it follows from: the seed ends here rather than taking
    # another step of the graph only to set it.
    threshold = runtime.context.critic_threshold
    passed = any(accepted(a, threshold) for a in merge_by_key(state["attempts"], judged))
    return {"attempts": judged, "outcome": "accepted" if passed else "rejected"}


def critic_passed(critique: Critique, threshold: float) -> bool:
    return critique.score >= threshold


def accepted(attempt: Attempt, threshold: float) -> bool:
    """The accept rule, the one place it is written (the judge's verdict and the sample's status both read it): the
    answer matches the reference and the critic scored the trace at least `threshold`."""
    return (attempt.check is not None and attempt.check.outcome == "match"
            and attempt.critique is not None and critic_passed(attempt.critique, threshold))


async def diagnose(state: TraceState, runtime: Runtime[ReasoningContext]) -> dict:
    round_ = state.get("revisions", 0)
    failed = next(a for a in state["attempts"] if a.round == round_ and a.solution is not None)
    try:
        feedback = await runtime.context.critic.diagnose(problem=state["problem"].text, solution=failed.transcript(),
                                                         subject=failed.key)
    except ModelOutputError:
        feedback = None  # revise anyway: a fresh attempt is still worth a try without the critic's words
    return {"feedback": feedback, "revisions": round_ + 1}


def reject(state: TraceState) -> dict:
    return {"outcome": "rejected"}


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(TraceState, context_schema=ReasoningContext)
    g.add_node(propose, retry_policy=model_retry)
    g.add_node(corroborate, retry_policy=model_retry)
    g.add_node(solve, input_schema=SolveTask, retry_policy=model_retry)
    g.add_node(verify)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(diagnose, retry_policy=model_retry)
    g.add_node(on_loop(reject))
    g.add_conditional_edges(START, on_loop(route_from_start), ["propose", "solve"])
    g.add_conditional_edges("propose", on_loop(route_after_propose), ["corroborate", "solve", "reject"])
    g.add_conditional_edges("corroborate", on_loop(fan_out), ["solve", "reject"])
    g.add_edge("solve", "verify")
    g.add_conditional_edges("verify", on_loop(route_after_verify), ["judge", "diagnose", "reject"])
    g.add_edge("judge", END)
    g.add_conditional_edges("diagnose", on_loop(fan_out), ["solve", "reject"])
    g.add_edge("reject", END)
    return g



# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: ReasoningRecipe, pool: ModelPool, store: Store | None = None) -> ReasoningContext:
    prompts = FAMILY.prompt_set(recipe)
    roles, verifier = recipe.roles, recipe.verifier
    solver_model = pool.client(recipe.role_model("solver"))
    proposer_model = pool.client(recipe.role_model("proposer"))
    return ReasoningContext(
        proposer=Proposer(proposer_model, roles.proposer.sampling(), prompts=prompts),
        solver=Solver(solver_model, roles.solver.sampling(), prompts=prompts),
        critic=Critic(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
        tool_solver=ToolSolver(solver_model, roles.solver.sampling(), prompts=prompts, max_steps=roles.solver.tir_steps,
                               sandbox_budget_s=roles.solver.tir_sandbox_s, run_timeout_s=verifier.sandbox_timeout_s,
                               memory_mb=verifier.sandbox_memory_mb),
        # The second program is a proposer call at a low temperature: it should compute, not invent.
        reference_writer=ReferenceWriter(proposer_model,
                                         roles.proposer.sampling().model_copy(update={"temperature": 0.2}),
                                         prompts=prompts) if recipe.validate_references else None,
        modes=("cot", "tir") if roles.solver.mode == "both" else (roles.solver.mode,),
        samples=roles.solver.samples,
        revise_rounds=recipe.revise.rounds,
        critic_threshold=roles.critic.threshold,
        sandbox_timeout_s=recipe.verifier.sandbox_timeout_s,
        sandbox_memory_mb=recipe.verifier.sandbox_memory_mb,
    )


def initial_state(seed: Seed) -> TraceState:
    gold = None if seed.problem is None else Problem(text=seed.problem, source="gold", reference=seed.answer)
    return {"seed": seed, "problem": gold, "attempts": [], "revisions": 0}


# ------------------------------------------------------------------------------------- state -> rows


def attempt_verdict(attempt: Attempt, threshold: float) -> tuple[str, str | None]:
    """(status, reason) of one attempt as a sample."""
    if attempt.error is not None:
        return "error", attempt.error
    if attempt.check is None:
        return "error", "never checked"
    if attempt.check.outcome == "unparseable":
        return "rejected", f"answer could not be checked: {attempt.check.reason}"
    if attempt.check.outcome == "mismatch":
        return "rejected", f"wrong answer: {attempt.check.reason}"
    if attempt.critique_error is not None:
        return "rejected", f"critic gave no usable verdict: {attempt.critique_error}"
    if attempt.critique is None:
        return "rejected", "verified but not judged"
    if not accepted(attempt, threshold):
        return "rejected", f"critic score {attempt.critique.score} < {threshold:g}: {attempt.critique.reason}"
    return "accepted", None


def to_rows(state: TraceState, *, run_id: str, seed_id: str, context: ReasoningContext
            ) -> Rows:
    """The samples, chat turns and verdicts of one finished graph instance, plus attempt key -> sample id."""
    threshold = context.critic_threshold
    problem = state.get("problem")
    validation = state.get("validation")
    problem_fields = {} if problem is None else {
        "problem": problem.text, "reference": problem.reference, "reference_source": problem.source,
        "program": problem.program, "program_output": problem.program_output,
        **({} if validation is None else {"validation": validation.model_dump(include={
            "status", "by", "second_answer", "solver_answers", "detail"})}),
    }
    samples, messages, verdicts, sample_ids = [], [], [], {}
    problem_reason = state.get("problem_error") or (
        f"unvalidated_reference: {validation.detail}" if unvalidated(state) else None)
    if problem_reason:
        payload = {**problem_fields, **({"second_program": validation.second_program} if unvalidated(state) else {})}
        sample = sample_row(run_id, seed_id, "problem", kind="reasoning_problem",
                            status="rejected" if problem is not None else "error", reason=problem_reason,
                            payload=payload)
        samples.append(sample)
        sample_id = sample_ids["problem"] = sample.sample_id
        if problem is not None:
            messages.append(MessageRow(sample_id=sample_id, turn=0, role="user", content=problem.text))
            verifier = "reference_validation" if unvalidated(state) else "reference_program"
            verdicts.append(VerdictRow(sample_id=sample_id, verifier=verifier, outcome="failed", detail=problem_reason))
        if state.get("problem_error"):
            return Rows(samples, messages, verdicts, sample_ids)
    for attempt in sorted(state.get("attempts", []), key=lambda a: (a.round, a.key)):
        status, reason = attempt_verdict(attempt, threshold)
        if unvalidated(state) and status != "error":
            status, reason = "rejected", "unvalidated_reference: the problem's reference answer was not corroborated"
        tir = {} if attempt.mode == "cot" else {
            "mode": "tir", "tools": [PYTHON_TOOL], "code_runs": len(attempt.steps), "stop_reason": attempt.stop_reason}
        sample = sample_row(
            run_id, seed_id, attempt.key, kind="reasoning_trace", status=status, reason=reason,
            score=attempt.critique.score if attempt.critique else None,
            payload={**problem_fields, "attempt": attempt.key, "round": attempt.round, "feedback": attempt.feedback,
                     "final_answer": attempt.check.extracted if attempt.check else None, **tir})
        samples.append(sample)
        sample_id = sample_ids[attempt.key] = sample.sample_id
        messages += trace_messages(sample_id, problem.text, attempt)
        if attempt.check is not None:
            outcome = {"match": "passed", "mismatch": "failed", "unparseable": "unchecked"}[attempt.check.outcome]
            verdicts.extend(check_rows(sample_id, {"math_verify": CheckOutcome(outcome, attempt.check.reason)}))
        if attempt.critique is not None:
            verdicts.append(critic_row(sample_id, score=attempt.critique.score, detail=attempt.critique.reason,
                                       passed=critic_passed(attempt.critique, threshold)))
        elif attempt.critique_error is not None:
            verdicts.append(unjudged_row(sample_id, attempt.critique_error))
        if unvalidated(state) and status != "error":  # the verdict the trace was rejected by, on the trace itself
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="reference_validation", outcome="failed",
                                       detail=validation.detail))
    return Rows(samples, messages, verdicts, sample_ids)


def trace_messages(sample_id: str, problem: str, attempt: Attempt) -> list[MessageRow]:
    """The chat turns of one attempt. A TIR trace keeps each code run as an assistant `python` tool call and a
    `tool` turn with its output (OpenAI format), so it exports as tool-use chat data."""
    turns = [MessageRow(sample_id=sample_id, turn=0, role="user", content=problem)]
    for i, step in enumerate(attempt.steps):
        call_id = f"call_{i}"
        arguments = json.dumps({"code": step.code}, ensure_ascii=False)
        turns.append(MessageRow(sample_id=sample_id, turn=len(turns), role="assistant", content=step.text or None,
                                tool_calls=[{"id": call_id, "type": "function",
                                             "function": {"name": "python", "arguments": arguments}}]))
        turns.append(MessageRow(sample_id=sample_id, turn=len(turns), role="tool", content=step.output,
                                tool_call_id=call_id, name="python"))
    if attempt.solution is not None:
        turns.append(MessageRow(sample_id=sample_id, turn=len(turns), role="assistant", content=attempt.solution))
    return turns


def prompts_unused(recipe: ReasoningRecipe) -> dict[str, str]:
    mode = recipe.roles.solver.mode
    unused = {"reasoning_solver": "solver.mode: tir; cot or both uses it"} if mode == "tir" else \
        {"reasoning_tir": f"solver.mode: {mode}; tir or both uses it"} if mode == "cot" else {}
    if not recipe.validate_references:
        unused["reasoning_reference"] = "validate_references: false"
    if recipe.revise.rounds == 0:
        unused["reasoning_diagnose"] = "revise.rounds: 0"
    return unused


FAMILY = Family(
    name="reasoning", recipe=ReasoningRecipe, build=build, make_context=make_context, initial_state=initial_state,
    to_rows=to_rows,
    prompts=("reasoning_proposer", "reasoning_solver", "reasoning_tir", "reasoning_reference", "reasoning_critic",
             "reasoning_diagnose"),
    prompts_unused=prompts_unused, prompt_text=reasoning_roles.PROMPT_TEXT, studio_recipe="demos/reasoning.yaml",
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
