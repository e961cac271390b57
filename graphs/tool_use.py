"""Tool-use trajectories: propose a request -> k assistants call real tools -> format / execution / semantic checks.

APIGen / ToolACE style. The proposer is offered 1-4 tools from the registry and writes a user request of a
planned kind (one call, parallel calls, dependent multi-step calls, or none needed). Each of k solver branches
runs the trajectory loop below: decide (call tools or answer) -> validate and execute the calls in a fresh tool
session -> feed the results back -> decide ..., until it answers or its step budget forces an answer. Then the
three stages: (1) format, every call valid against its tool's JSON schema (`validate_call`); (2) execution, every
call ran without error (spec-only tools cannot run: `unchecked`); (3) semantic, the critic judges whether the
calls and the answer serve the request. Two more computable checks come before the critic: `tool_choice` (tools
called for a request that needs none, or none for one that does, fail it) and `results_used` (the answer must
contain a value the tools returned: results fed back, not made up beside them). Every trajectory becomes a sample in OpenAI form (`tool_calls` on
assistant turns, `tool` turns with the results); the calls with their stage outcomes sit in `payload.calls`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel

from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.agents.tool_use_roles import (CallResult, Decision, RequestKind, ToolJudgement, ToolUseCritic,
                                              ToolUseProposer, ToolUseSolver)
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.recipe import ToolUseRecipe, ToolUseSeed, draw_kind
from synthgraph.store.rows import MessageRow, SampleRow, VerdictRow, stable_id
from synthgraph.store.db import Store
from synthgraph.tools.functions import ToolRegistry, ToolSession, register_document_search, validate_call
from synthgraph.tools.retrieval import RetrievalError, Retriever, ingest_corpus

StageOutcome = Literal["passed", "failed", "unchecked"]


class ExecutedCall(BaseModel):
    """One tool call of a trajectory and how it fared in the format and execution stages."""

    id: str
    step: int
    name: str
    arguments: dict[str, Any]
    format_problems: list[str] = []
    execution: Literal["passed", "failed", "unchecked", "skipped"]  # skipped: invalid, so never run
    result: str | None = None       # what the tool returned (JSON text), fed back to the assistant
    error: str | None = None        # why the tool failed

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


class Trajectory(BaseModel):
    key: str                                       # k<branch>: stable, so sample ids survive a rerun
    decisions: list[Decision] = []
    calls: list[ExecutedCall] = []
    answer: str | None = None
    stopped: Literal["answered", "calls_only", "error"] = "error"
    forced_answer: bool = False                    # the step budget left only `answer`
    error: str | None = None                       # the solver's output was refused on every try
    judgement: ToolJudgement | None = None
    judgement_error: str | None = None

    def calls_at(self, step: int) -> list[ExecutedCall]:
        return [c for c in self.calls if c.step == step]


class ToolUseState(TypedDict, total=False):
    seed: ToolUseSeed
    kind: RequestKind
    tools: list[dict[str, Any]]                    # the OpenAI specs on offer
    request: str | None
    request_error: str | None
    trajectories: Annotated[list[Trajectory], merge_by_key]
    outcome: Literal["accepted", "rejected"]


class SolveTask(TypedDict):
    key: str
    request: str
    tools: list[dict[str, Any]]


@dataclass
class ToolUseContext:
    """The graph's run-scoped dependencies: tests pass fakes, the CLI passes real models."""

    proposer: ToolUseProposer
    solver: ToolUseSolver
    critic: ToolUseCritic
    registry: ToolRegistry
    mix: dict[str, float]
    tool_state: dict[str, Any] = field(default_factory=dict)   # each trajectory's tools start from a copy
    tools_per_request: tuple[int, int] = (1, 3)
    samples: int = 2
    max_steps: int = 4
    critic_threshold: float = 6


# ------------------------------------------------------------------------------------------ the trajectory loop


class StepState(TypedDict, total=False):
    key: str
    request: str
    tools: list[dict[str, Any]]
    session: ToolSession                           # this trajectory's own tool state (files, stock, ...)
    trajectory: Trajectory


async def decide(state: StepState, runtime: Runtime[ToolUseContext]) -> dict:
    trajectory = state["trajectory"]
    step = len(trajectory.decisions)
    final = step + 1 >= runtime.context.max_steps
    history = [(decision, [CallResult(id=c.id, name=c.name, arguments=c.arguments,
                                      content=c.result if c.result is not None else json.dumps({"error": c.error}))
                           for c in trajectory.calls_at(i)])
               for i, decision in enumerate(trajectory.decisions)]
    try:
        decision = await runtime.context.solver.step(state["request"], state["tools"], history, final=final,
                                                     subject=trajectory.key)
    except ModelOutputError as exc:
        return {"trajectory": trajectory.model_copy(update={"error": str(exc), "stopped": "error"})}
    update: dict[str, Any] = {"decisions": [*trajectory.decisions, decision]}
    if decision.action == "answer":
        update |= {"answer": decision.content.strip(), "stopped": "answered", "forced_answer": final}
    return {"trajectory": trajectory.model_copy(update=update)}


def route_after_decide(state: StepState) -> Literal["run_tools", "__end__"]:
    trajectory = state["trajectory"]
    if trajectory.error is not None or trajectory.decisions[-1].action == "answer":
        return END
    return "run_tools"


def run_tools(state: StepState, runtime: Runtime[ToolUseContext]) -> dict:
    """Stages 1 and 2 as the calls happen: validate each call against its tool's schema, run the valid ones."""
    trajectory, registry, session = state["trajectory"], runtime.context.registry, state["session"]
    offered = {tool["function"]["name"]: tool for tool in state["tools"]}
    step = len(trajectory.decisions) - 1
    calls, spec_only = [], False
    for i, requested in enumerate(trajectory.decisions[-1].calls):
        call = {"name": requested.name, "arguments": requested.arguments}
        spec = offered.get(requested.name)
        problems = (validate_call(call, spec) if spec is not None
                    else [f"unknown function {requested.name!r}: the tools on offer are {', '.join(offered)}"])
        executed = ExecutedCall(id=f"call_{step}_{i}", step=step, name=requested.name, arguments=requested.arguments,
                                format_problems=problems, execution="skipped")
        if problems:
            executed.error = "invalid call: " + "; ".join(problems)
        elif not runnable(requested.name, spec, registry):
            executed.execution, spec_only = "unchecked", True
        else:
            result = session.execute(call)
            executed.execution = "passed" if result.ok else "failed"
            executed.result, executed.error = (result.content, None) if result.ok else (None, result.error or result.content)
        calls.append(executed)
    update: dict[str, Any] = {"calls": [*trajectory.calls, *calls]}
    if spec_only:  # nothing can answer a spec-only call: the data is the call itself
        update["stopped"] = "calls_only"
    return {"trajectory": trajectory.model_copy(update=update)}


def runnable(name: str, spec: dict[str, Any], registry: ToolRegistry) -> bool:
    """A call runs only through the registry's own implementation of that very spec: a seed's inline spec that
    happens to share a builtin's name is spec-only."""
    return name in registry and registry.get(name).executable and registry.get(name).spec == spec


def route_after_tools(state: StepState) -> Literal["decide", "__end__"]:
    return END if state["trajectory"].stopped == "calls_only" else "decide"


def build_trajectory() -> StateGraph:
    g = StateGraph(StepState, context_schema=ToolUseContext)
    g.add_node(decide, retry_policy=RetryPolicy(max_attempts=3))
    g.add_node(run_tools)
    g.add_edge(START, "decide")
    g.add_conditional_edges("decide", route_after_decide, ["run_tools", END])
    g.add_conditional_edges("run_tools", route_after_tools, ["decide", END])
    return g


# Its state holds a live ToolSession, so it never inherits the runner's checkpointer: a `solve` node is the unit
# a resumed seed redoes.
trajectory_graph = build_trajectory().compile(checkpointer=False)


# --------------------------------------------------------------------------------------------- the recipe graph


def plan_request(seed: ToolUseSeed, context: ToolUseContext) -> tuple[RequestKind, list[dict[str, Any]]]:
    """The seed's kind and tools, or ones drawn for it: from the seed's id, so a rerun draws the same."""
    rng = random.Random(seed.seed_id)
    kind = seed.kind or draw_kind(context.mix, rng)
    if seed.tools:  # registry names, and inline specs (normalised to OpenAI form by registering them)
        return kind, [context.registry.get(t).spec if isinstance(t, str) else ToolRegistry().register(t).spec
                      for t in seed.tools]
    low, high = context.tools_per_request
    if kind == "multi_step":  # a dependent call chain reads naturally across two tools
        low = max(low, min(2, high))
    tools = context.registry.sample(rng, rng.randint(low, high))
    return kind, context.registry.specs([t.name for t in tools])


def environment(tools: list[dict[str, Any]], context: ToolUseContext) -> dict[str, Any]:
    """The starting state the offered tools can see (files for file tools, stock for inventory tools), so
    requests can be about things that exist."""
    if not any(context.registry.get(t["function"]["name"]).stateful for t in tools):
        return {}
    return context.tool_state


async def propose(state: ToolUseState, runtime: Runtime[ToolUseContext]) -> dict:
    seed = state["seed"]
    kind, tools = plan_request(seed, runtime.context)
    if seed.request is not None:
        return {"kind": kind, "tools": tools, "request": seed.request}
    try:
        request = await runtime.context.proposer.write_request(tools, kind, seed.topic,
                                                               environment=environment(tools, runtime.context))
    except ModelOutputError as exc:
        return {"kind": kind, "tools": tools, "request": None, "request_error": str(exc)}
    return {"kind": kind, "tools": tools, "request": request}


def fan_out(state: ToolUseState, runtime: Runtime[ToolUseContext]) -> list[Send] | Literal["reject"]:
    if state.get("request") is None:
        return "reject"
    return [Send("solve", SolveTask(key=f"k{i}", request=state["request"], tools=state["tools"]))
            for i in range(runtime.context.samples)]


async def solve(task: SolveTask, runtime: Runtime[ToolUseContext]) -> dict:
    result = await trajectory_graph.ainvoke(
        {"key": task["key"], "request": task["request"], "tools": task["tools"],
         "session": runtime.context.registry.session(state=runtime.context.tool_state), "trajectory": Trajectory(key=task["key"])},
        context=runtime.context,
    )
    return {"trajectories": [result["trajectory"]]}


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _numbers(text: str) -> list[float]:
    return [float(match.replace(",", "")) for match in _NUMBER.findall(text)]


def results_used(trajectory: Trajectory, request: str) -> tuple[StageOutcome, str]:
    """Is the final answer built on what the tools returned? At least one value that a tool returned — and the
    request did not already contain — must appear in the answer (numbers to within rounding). Catches answers
    made up beside the results; whether the answer is *right* stays the critic's call."""
    values = []
    for call in trajectory.calls:
        if call.execution == "passed" and call.result is not None:
            values.extend(leaf for leaf in _leaves(json.loads(call.result)) if not isinstance(leaf, bool))
    request_numbers, request_text = _numbers(request), request.lower()
    numbers = [v for v in values if isinstance(v, int | float) and v not in request_numbers]
    words = [v for v in values if isinstance(v, str) and len(v) >= 3 and v.lower() not in request_text]
    if not numbers and not words:
        return "unchecked", "the tools returned nothing the request did not already say"
    answer = trajectory.answer or ""
    said = _numbers(answer)
    for number in numbers:
        if any(abs(a - number) <= max(abs(number) * 0.01, 0.005) for a in said):
            return "passed", f"the answer uses the result {number:g}"
    for word in words:
        if word.lower() in answer.lower():
            return "passed", f"the answer uses the result {word!r}"
    return "failed", "the answer uses none of the values the tools returned"


def _same(value: Any, allowed: Any) -> bool:
    """BFCL-style value equality: numbers by value (2 == 2.0), strings ignoring case and outer spaces."""
    if isinstance(value, bool) or isinstance(allowed, bool):
        return value is allowed
    if isinstance(value, int | float) and isinstance(allowed, int | float):
        return math.isclose(value, allowed, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(value, str) and isinstance(allowed, str):
        return value.strip().casefold() == allowed.strip().casefold()
    if isinstance(value, list) and isinstance(allowed, list):
        return len(value) == len(allowed) and all(map(_same, value, allowed))
    if isinstance(value, dict) and isinstance(allowed, dict):
        return value.keys() == allowed.keys() and all(_same(value[k], allowed[k]) for k in value)
    return value == allowed


def reference_mismatch(call: ExecutedCall, reference: dict[str, Any]) -> str | None:
    """Why `call` is not the reference call (name, and every argument among its acceptable values; "" in a
    list means the argument may be left out), or None when it is."""
    if call.name != reference["name"]:
        return f"calls {call.name}, the reference calls {reference['name']}"
    allowed = reference.get("arguments", {})
    for argument, value in call.arguments.items():
        if argument not in allowed:
            return f"{call.name}: argument {argument!r} is not in the reference call"
        if not any(_same(value, option) for option in allowed[argument] if option != ""):
            return f"{call.name}: {argument}={json.dumps(value)}, the reference allows {json.dumps(allowed[argument])}"
    missing = [a for a, options in allowed.items() if a not in call.arguments and "" not in options]
    return f"{call.name}: leaves out {', '.join(missing)}" if missing else None


def reference_calls(trajectory: Trajectory, ground_truth: list[dict[str, Any]]) -> tuple[StageOutcome, str]:
    """The calls, in any order, are exactly the reference calls (BFCL's possible answers)."""
    if len(trajectory.calls) != len(ground_truth):
        return "failed", f"made {len(trajectory.calls)} calls, the reference has {len(ground_truth)}"
    unmatched = list(ground_truth)
    for call in trajectory.calls:
        reasons = [reference_mismatch(call, reference) for reference in unmatched]
        if None not in reasons:
            same_name = [r for r in reasons if not r.startswith("calls ")]
            return "failed", (same_name or reasons)[0]
        unmatched.pop(reasons.index(None))
    return "passed", f"all {len(ground_truth)} calls match the reference"


def checks(trajectory: Trajectory, kind: RequestKind, request: str, ground_truth: list[dict[str, Any]] | None = None
           ) -> dict[str, tuple[StageOutcome, str]]:
    """The computable verdicts of a trajectory: verifier -> (outcome, detail)."""
    if trajectory.error is not None:
        return {}
    invalid = [c for c in trajectory.calls if c.format_problems]
    failed = [c for c in trajectory.calls if c.execution == "failed"]
    spec_only = [c for c in trajectory.calls if c.execution == "unchecked"]
    verdicts: dict[str, tuple[StageOutcome, str]] = {}
    verdicts["format"] = (("failed", "; ".join(f"{c.name}: {p}" for c in invalid for p in c.format_problems))
                          if invalid else ("passed", f"{len(trajectory.calls)} valid calls"))
    if failed:
        verdicts["execution"] = ("failed", "; ".join(f"{c.name}: {c.error}" for c in failed))
    elif spec_only:
        verdicts["execution"] = ("unchecked", f"spec-only tools cannot run: {', '.join(c.name for c in spec_only)}")
    elif invalid:
        verdicts["execution"] = ("unchecked", "invalid calls were not run")
    else:
        verdicts["execution"] = ("passed", f"{len(trajectory.calls)} calls ran without error")
    if trajectory.answer is not None and verdicts["execution"][0] == "passed" and trajectory.calls:
        verdicts["results_used"] = results_used(trajectory, request)
    if ground_truth is not None:
        verdicts["reference_calls"] = reference_calls(trajectory, ground_truth)
    if kind == "no_tool":
        verdicts["tool_choice"] = (("failed", "called tools for a request that needs none") if trajectory.calls
                                   else ("passed", "answered without tools"))
    else:
        verdicts["tool_choice"] = (("passed", f"{len(trajectory.calls)} calls") if trajectory.calls
                                   else ("failed", f"a {kind} request answered without calling a tool"))
    return verdicts


def state_checks(trajectory: Trajectory, state: ToolUseState) -> dict[str, tuple[StageOutcome, str]]:
    return checks(trajectory, state["kind"], state["request"], state["seed"].ground_truth)


def _checked(trajectory: Trajectory, state: ToolUseState) -> bool:
    verdicts = state_checks(trajectory, state)
    return bool(verdicts) and all(outcome != "failed" for outcome, _ in verdicts.values())


def _needs_critic(trajectory: Trajectory, state: ToolUseState) -> bool:
    """The critic is the semantic stage where nothing better exists: calls that match a seed's ground truth
    (BFCL's possible answers) have passed a semantic check that can be computed, and the critic is not asked."""
    return _checked(trajectory, state) and state["seed"].ground_truth is None


def route_after_solve(state: ToolUseState) -> Literal["judge", "accept", "reject"]:
    if any(_needs_critic(t, state) for t in state["trajectories"]):
        return "judge"
    return "accept" if any(_checked(t, state) for t in state["trajectories"]) else "reject"


def transcript(trajectory: Trajectory) -> str:
    lines = []
    for step, decision in enumerate(trajectory.decisions):
        for call in trajectory.calls_at(step):
            called = f"Called {call.name}({json.dumps(call.arguments, ensure_ascii=False)})"
            if call.execution == "unchecked":  # spec-only: there is no result to show, and none is missing
                lines.append(called)
            else:
                lines.append(f"{called} -> {call.result if call.result is not None else f'(error: {call.error})'}")
    if trajectory.answer is not None:
        lines.append(f"Final answer: {trajectory.answer}")
    else:
        lines.append("(The reply is these calls alone: the tools are not run here. Judge whether they are the right "
                     "calls, with the right values, for the request.)")
    return "\n".join(lines)


async def judge(state: ToolUseState, runtime: Runtime[ToolUseContext]) -> dict:
    """Stage 3: the critic judges the trajectories that passed the computable checks."""
    async def one(trajectory: Trajectory) -> Trajectory:
        try:
            judgement = await runtime.context.critic.judge(request=state["request"], transcript=transcript(trajectory),
                                                           subject=trajectory.key)
        except ModelOutputError as exc:
            return trajectory.model_copy(update={"judgement_error": str(exc)})
        return trajectory.model_copy(update={"judgement": judgement})

    checked = [t for t in state["trajectories"] if _needs_critic(t, state)]
    return {"trajectories": list(await asyncio.gather(*(one(t) for t in checked)))}


def route_after_judge(state: ToolUseState, runtime: Runtime[ToolUseContext]) -> Literal["accept", "reject"]:
    threshold = runtime.context.critic_threshold
    return "accept" if any(trajectory_verdict(t, state, threshold)[0] == "accepted"
                           for t in state["trajectories"]) else "reject"


def accept(state: ToolUseState) -> dict:
    return {"outcome": "accepted"}


def reject(state: ToolUseState) -> dict:
    return {"outcome": "rejected"}


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(ToolUseState, context_schema=ToolUseContext)
    g.add_node(propose, retry_policy=model_retry)
    g.add_node(solve, input_schema=SolveTask)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(accept)
    g.add_node(reject)
    g.add_edge(START, "propose")
    g.add_conditional_edges("propose", fan_out, ["solve", "reject"])
    g.add_conditional_edges("solve", route_after_solve, ["judge", "accept", "reject"])
    g.add_conditional_edges("judge", route_after_judge, ["accept", "reject"])
    g.add_edge("accept", END)
    g.add_edge("reject", END)
    return g


graph = build().compile()  # `langgraph dev` / Studio entry point (langgraph.json)


# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: ToolUseRecipe, pool: ModelPool, *, store: Store | None = None) -> ToolUseContext:
    roles = recipe.roles
    registry = recipe.registry()
    if recipe.tools.corpus is not None:
        if store is None:
            raise RetrievalError("tools.corpus needs the run's store to search: run the recipe with the runner")
        corpus = recipe.tools.corpus
        ingest_corpus(store.con, corpus.name, recipe.corpus_paths(), max_chars=corpus.max_chars,
                      overlap=corpus.overlap)
        retriever = Retriever(store.con, corpus=corpus.name)
        register_document_search(registry, lambda query, k: retriever.search(query, k), about=corpus.about)
    return ToolUseContext(
        proposer=ToolUseProposer(pool.client(recipe.role_model("proposer")), roles.proposer.sampling()),
        solver=ToolUseSolver(pool.client(recipe.role_model("solver")), roles.solver.sampling(),
                             max_calls_per_step=roles.solver.max_calls_per_step,
                             constrain_arguments=roles.solver.constrain_arguments, mode=roles.solver.mode),
        critic=ToolUseCritic(pool.client(recipe.role_model("critic")), roles.critic.sampling()),
        registry=registry,
        mix=dict(recipe.mix),
        tool_state=recipe.tools.state,
        tools_per_request=recipe.tools_per_request,
        samples=roles.solver.samples,
        max_steps=roles.solver.max_steps,
        critic_threshold=roles.critic.threshold,
    )


def initial_state(seed: ToolUseSeed) -> ToolUseState:
    return {"seed": seed, "trajectories": []}


# ------------------------------------------------------------------------------------- state -> rows


def trajectory_verdict(trajectory: Trajectory, state: ToolUseState, threshold: float) -> tuple[str, str | None]:
    """(status, reason) of one trajectory as a sample."""
    if trajectory.error is not None:
        return "error", trajectory.error
    for verifier, (outcome, detail) in state_checks(trajectory, state).items():
        if outcome == "failed":
            return "rejected", f"{verifier}: {detail}"
    if state["seed"].ground_truth is not None:
        return "accepted", None  # reference_calls passed: the computed semantic check
    if trajectory.judgement_error is not None:
        return "rejected", f"critic gave no usable verdict: {trajectory.judgement_error}"
    judgement = trajectory.judgement
    if judgement is None:
        return "rejected", "passed the checks but not judged"
    if not judgement.satisfied or judgement.score < threshold:
        return "rejected", f"critic score {judgement.score} < {threshold:g}" if judgement.satisfied else \
            f"critic: request not served ({judgement.score}): {judgement.reason}"
    return "accepted", None


def observed_shape(trajectory: Trajectory) -> str:
    """What the trajectory did, to set beside the kind that was asked for."""
    steps_with_calls = len({c.step for c in trajectory.calls})
    if not trajectory.calls:
        return "no_tool"
    if steps_with_calls > 1:
        return "multi_step"
    return "parallel" if len(trajectory.calls) > 1 else "single"


def trajectory_messages(sample_id: str, request: str, trajectory: Trajectory) -> list[MessageRow]:
    """The OpenAI turns: user, then per step an assistant turn with `tool_calls` and one `tool` turn per call."""
    rows = [MessageRow(sample_id=sample_id, turn=0, role="user", content=request)]

    def add(**fields):
        rows.append(MessageRow(sample_id=sample_id, turn=len(rows), **fields))

    for step, decision in enumerate(trajectory.decisions):
        if decision.action == "answer":
            add(role="assistant", content=decision.content.strip())
            continue
        calls = trajectory.calls_at(step)
        add(role="assistant", content=None, tool_calls=[c.openai() for c in calls])
        for call in calls:
            if call.execution != "unchecked":
                content = call.result if call.result is not None else json.dumps({"error": call.error})
                add(role="tool", content=content, tool_call_id=call.id, name=call.name)
    return rows


def to_rows(state: ToolUseState, *, run_id: str, seed_id: str, context: ToolUseContext
            ) -> tuple[list[SampleRow], list[MessageRow], list[VerdictRow], dict[str, str]]:
    """The samples, chat turns and verdicts of one finished graph instance, plus trajectory key -> sample id."""
    group_id = stable_id(run_id, seed_id)
    kind, tools, request = state["kind"], state["tools"], state.get("request")
    base = {"request_kind": kind, "tools": tools, "request": request,
            "request_source": "seed" if state["seed"].request is not None else "proposed",
            "ground_truth": state["seed"].ground_truth}
    if request is None:
        sample_id = stable_id(run_id, seed_id, "request")
        return [SampleRow(sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id, kind="tool_request",
                          status="error", reason=state.get("request_error"), payload=base)], [], [], \
            {"request": sample_id}
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for trajectory in sorted(state["trajectories"], key=lambda t: int(t.key[1:])):
        sample_id = stable_id(run_id, seed_id, trajectory.key)
        sample_ids[trajectory.key] = sample_id
        status, reason = trajectory_verdict(trajectory, state, context.critic_threshold)
        judgement = trajectory.judgement
        samples.append(SampleRow(
            sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id, kind="tool_trajectory",
            status=status, reason=reason, score=judgement.score if judgement else None,
            payload={**base, "attempt": trajectory.key, "stopped": trajectory.stopped,
                     "forced_answer": trajectory.forced_answer, "shape": observed_shape(trajectory),
                     "steps": len(trajectory.decisions), "answer": trajectory.answer,
                     "calls": [c.model_dump() for c in trajectory.calls]}))
        if trajectory.decisions:
            messages.extend(trajectory_messages(sample_id, request, trajectory))
        for verifier, (outcome, detail) in state_checks(trajectory, state).items():
            verdicts.append(VerdictRow(sample_id=sample_id, verifier=verifier, outcome=outcome, detail=detail,
                                       score={"passed": 1.0, "failed": 0.0}.get(outcome)))
        if judgement is not None:
            passed = judgement.satisfied and judgement.score >= context.critic_threshold
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="critic", outcome="passed" if passed else "failed",
                                       score=judgement.score, detail=judgement.reason))
        elif trajectory.judgement_error is not None:
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="critic", outcome="unchecked",
                                       detail=trajectory.judgement_error))
    return samples, messages, verdicts, sample_ids
