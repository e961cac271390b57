"""Tool-use trajectories: propose a request -> k assistants call real tools -> format / execution / semantic checks.

APIGen / ToolACE style. The proposer is offered 1-4 tools from the registry and writes a user request of a planned
kind (one call, parallel calls, dependent multi-step calls, or none needed). Each of k solver branches runs the
trajectory loop below: decide (call tools or answer) -> validate and execute the calls in a fresh tool session ->
feed the results back -> decide ..., until it answers or its step budget forces an answer. Then the three stages
(the computable ones in `verify`, from tools/tool_use_checks.py, kept in each trajectory's `checks`): (1) format,
every call valid against its tool's JSON schema (`validate_call`); (2) execution, every call ran without error
(spec-only tools cannot run: `unchecked`); (3) semantic, the critic judges whether the calls and the answer serve
the request. Two more computable checks come before the critic: `tool_choice` (tools called for a request that
needs none, or none for one that does, fail it) and `results_used` (the answer must contain a value the tools
returned: results fed back, not made up beside them). Every trajectory becomes a sample in OpenAI form
(`tool_calls` on assistant turns, `tool` turns with the results); the calls with their stage outcomes sit in
`payload.calls`.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgraph.agents import tool_use_roles
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.agents.tool_use_roles import (CallResult, Decision, RequestKind, ToolJudgement, ToolUseCritic,
                                              ToolUseProposer, ToolUseSolver)
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import (CorpusSettings, CriticSettings, ProposerSettings, RecipeBase, SeedBase,
                                       SolverSettings, changed, check_mix, draw_kind)
from synthgraph.graphs.rows import check_rows, critic_row, sample_row, unjudged_row
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, stable_id
from synthgraph.tools.bfcl import load_tool_specs
from synthgraph.tools.builtin_tools import builtin_registry, register_document_search, search_documents_spec
from synthgraph.tools.registry import ToolRegistry, ToolSession
from synthgraph.tools.retrieval import CORPUS_TABLES, RetrievalError, Retriever, ingest_corpus
from synthgraph.tools.tool_calls import validate_call
from synthgraph.tools.tool_use_checks import CheckOutcome, ExecutedCall, trajectory_checks

# ------------------------------------------------------------------------------------------------ recipe


class ToolUseProposerSettings(ProposerSettings):
    max_tokens: int = Field(256, ge=1, le=32768)


class ToolUseSolverSettings(SolverSettings):
    samples: int = Field(2, ge=1, le=64, description="independent trajectories per request (k)")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(384, ge=1, le=32768, description="per step")
    max_steps: int = Field(4, ge=2, le=16, description="model turns per trajectory; the last may only answer (so one "
                                                       "step could never call a tool)")
    max_calls_per_step: int = Field(4, ge=1, le=16)
    constrain_arguments: bool = Field(
        True, description="hold each call's arguments to its tool's schema in the grammar (weak models need it); "
                          "false leaves the format check something to catch")
    mode: Literal["structured", "native"] = Field(
        "structured", description="structured: calls through a JSON grammar of the offered tools (any model); "
                                  "native: the model's own tool calling (Hermes-format in process, or the "
                                  "server's tool_calls)")

    @model_validator(mode="after")
    def _grammar_settings_need_the_grammar(self):
        # Both shape the JSON grammar of structured steps; native calls are the model's own, held to nothing.
        if self.mode == "native" and (set_ := changed(self, ["max_calls_per_step", "constrain_arguments"])):
            raise ValueError(f"{' and '.join(set_)} {'shape' if len(set_) > 1 else 'shapes'} the JSON grammar of "
                             "mode: structured, and mode: native uses none (the model's own tool calls): remove "
                             f"{'them' if len(set_) > 1 else 'it'} or use mode: structured")
        return self


class ToolUseRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: ToolUseProposerSettings = Field(default_factory=ToolUseProposerSettings)
    solver: ToolUseSolverSettings = Field(default_factory=ToolUseSolverSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)



class ToolUseSeed(SeedBase):
    """A tool-use seed: which kind of request to write (drawn from the recipe's `mix` when absent), which tools to
    offer (names from the registry, sampled when absent, or inline OpenAI specs: spec-only), an optional scenario
    `topic`; or a ready user `request` with the `tools` it is about (and a `kind` only if it names one: without one
    it is taken to need some tool call), which skips the proposer, and optionally its
    `ground_truth` calls (`[{"name", "arguments": {arg: [acceptable values; "" = may be left out]}}]`, BFCL's
    possible answers) for the `reference_calls` check. BFCL seed lines (`demos/seeds/bfcl.py`) load as they are:
    their `messages` give the request and their `category` the kind."""

    kind: RequestKind | None = None
    tools: list[str | dict[str, Any]] | None = None
    topic: str | None = None
    request: str | None = None
    ground_truth: list[dict[str, Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bfcl_line(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("request") is None and isinstance(data.get("messages"), list):
            users = [m.get("content") for m in data["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                data = {**data, "request": users[0]}
            if data.get("kind") is None and isinstance(data.get("category"), str):
                data["kind"] = "parallel" if "parallel" in data["category"] else "single"
        return data

    @model_validator(mode="after")
    def _request_needs_tools(self):
        if self.request is not None and not self.tools:
            raise ValueError("a seed with a ready `request` needs the `tools` to offer with it")
        if self.tools is not None and not self.tools:
            raise ValueError("`tools` must name at least one tool (or be left out to sample them)")
        if self.ground_truth is not None and self.request is None:
            raise ValueError("`ground_truth` belongs to a ready `request`; a proposed request has none")
        return self

    @property
    def tool_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.get("function", t).get("name", "?") for t in self.tools or []]

    @property
    def inline_specs(self) -> list[dict[str, Any]]:
        return [t for t in self.tools or [] if isinstance(t, dict)]

    @property
    def generative(self) -> bool:
        return self.request is None


class ToolSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    builtin: bool = Field(True, description="offer the shipped executable tools (tools/builtin_tools.py)")
    files: list[Path] = Field(default_factory=list,
                              description="OpenAI tools JSON or BFCL JSON/JSONL files; relative to the recipe. "
                                          "Their tools are spec-only: calls are checked, not executed")
    from_seeds: bool = Field(False, description="the seeds bring their own specs (inline in `tools`), e.g. BFCL")
    corpus: CorpusSettings | None = Field(None, description="offer `search_documents` over this corpus, ingested "
                                                           "into the run's store when it starts")
    state: dict[str, Any] = Field(default_factory=dict,
                                  description="what every trajectory's stateful tools start from, e.g. "
                                              "{files: {name: text}, inventory: {item: count}}; the proposer sees it")


class ToolUseRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = ToolUseSeed

    graph: Literal["tool_use"]
    roles: ToolUseRoles = Field(default_factory=ToolUseRoles)
    tools: ToolSource = Field(default_factory=ToolSource)
    mix: dict[RequestKind, float] = Field(
        default_factory=lambda: {"single": 0.3, "parallel": 0.2, "multi_step": 0.3, "no_tool": 0.2},
        description="share of each request kind, for seeds that do not name their kind")
    tools_per_request: tuple[int, int] = Field((1, 3), description="how many tools a sampled request is offered")

    @model_validator(mode="after")
    def _mix_and_sizes(self):
        check_mix(self.mix)
        low, high = self.tools_per_request
        if not 1 <= low <= high <= 8:
            raise ValueError("tools_per_request must be [low, high] with 1 <= low <= high <= 8")
        if not (self.tools.builtin or self.tools.files or self.tools.from_seeds):
            raise ValueError("tools: offer the builtin tools, name spec files, or set from_seeds")
        if self.tools.state and not self.tools.builtin:
            raise ValueError("tools.state is what the builtin stateful tools start from, and tools.builtin is off: "
                             "remove state, or turn builtin on")
        if self.tools.from_seeds and changed(self, ["tools_per_request"]):
            raise ValueError("tools_per_request sizes the tools drawn for a request, and with tools.from_seeds every "
                             "seed brings its own: remove tools_per_request")
        return self

    def tool_files(self) -> list[Path]:
        return [self.resolve(f) for f in self.tools.files]

    def registry(self) -> ToolRegistry:
        """The builtin tools (if on) plus every spec file's tools, spec-only."""
        registry = builtin_registry() if self.tools.builtin else ToolRegistry()
        for file in self.tool_files():
            for spec in load_tool_specs(file):
                registry.register(spec)
        if self.tools.corpus is not None:  # its implementation needs the run's store: make_context binds it
            registry.register(search_documents_spec(self.tools.corpus.about), group="documents")
        return registry

    def corpus_paths(self) -> list[Path]:
        return [self.resolve(p) for p in (self.tools.corpus.paths if self.tools.corpus else [])]

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        for file in self.tool_files():
            if not file.is_file():
                raise ValueError(f"tools.files: {file} does not exist")
        for path in self.corpus_paths():
            if not path.exists():
                raise ValueError(f"tools.corpus.paths: {path} does not exist")
        try:
            known = set(self.registry().names())
        except (ValueError, KeyError) as exc:
            raise ValueError(f"tools.files: {exc}") from None
        for seed in seeds:
            for spec in seed.inline_specs:
                try:
                    ToolRegistry().register(spec)
                except ValueError as exc:
                    raise ValueError(f"seed {seed.seed_id}: tool spec: {exc}") from None
            if self.tools.from_seeds and not seed.inline_specs:
                raise ValueError(f"seed {seed.seed_id}: tools.from_seeds is set but the seed brings no tool specs")
            unknown = sorted({t for t in seed.tools or [] if isinstance(t, str)} - known)
            if unknown:
                raise ValueError(f"seed {seed.seed_id}: unknown tools {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known)[:30])}{' ...' if len(known) > 30 else ''})")

    def identity(self, seeds: list[SeedBase]) -> dict[str, Any]:
        identity = super().identity(seeds)
        identity["tools"] = stable_id(json.dumps(self.registry().specs(), sort_keys=True))  # what was on offer
        return identity



class Trajectory(BaseModel):
    key: str                                       # k<branch>: stable, so sample ids survive a rerun
    decisions: list[Decision] = []
    calls: list[ExecutedCall] = []
    answer: str | None = None
    stopped: Literal["answered", "calls_only", "error"] = "error"
    forced_answer: bool = False                    # the step budget left only `answer`
    error: str | None = None                       # the solver's output was refused on every try
    checks: dict[str, CheckOutcome] = {}           # the computable stages, set by verify
    judgement: ToolJudgement | None = None
    judgement_error: str | None = None

    def calls_at(self, step: int) -> list[ExecutedCall]:
        return [c for c in self.calls if c.step == step]


class ToolUseState(TypedDict, total=False):
    seed: ToolUseSeed
    kind: RequestKind | None                      # None: a ready request naming no kind (its tools are to be used)
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
    g.add_conditional_edges("decide", on_loop(route_after_decide), ["run_tools", END])
    g.add_conditional_edges("run_tools", on_loop(route_after_tools), ["decide", END])
    return g


# Its state holds a live ToolSession, so it never inherits the runner's checkpointer: a `solve` node is the unit
# a resumed seed redoes.
trajectory_graph = build_trajectory().compile(checkpointer=False)


# --------------------------------------------------------------------------------------------- the recipe graph


def plan_request(seed: ToolUseSeed, context: ToolUseContext) -> tuple[RequestKind | None, list[dict[str, Any]]]:
    """The seed's kind and tools, or ones drawn for it: from the seed's id, so a rerun draws the same. A ready
    request keeps the kind it names, or none: `mix` shapes the requests the proposer writes, and a user's own
    request drawn `no_tool` at random would be graded against a kind nobody asked for."""
    rng = random.Random(seed.seed_id)
    kind = seed.kind if seed.request is not None else seed.kind or draw_kind(context.mix, rng)
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


async def verify(state: ToolUseState) -> dict:
    """The computable stages of every trajectory, once, kept in the state: format, execution, results used,
    reference calls, tool choice. A trajectory whose solver failed has nothing to check."""
    return {"trajectories": [
        t.model_copy(update={"checks": trajectory_checks(t.calls, t.answer, kind=state["kind"],
                                                         request=state["request"],
                                                         ground_truth=state["seed"].ground_truth)})
        for t in state["trajectories"] if t.error is None]}


def passed_checks(trajectory: Trajectory) -> bool:
    return bool(trajectory.checks) and all(check.outcome != "failed" for check in trajectory.checks.values())


def needs_critic(trajectory: Trajectory, state: ToolUseState) -> bool:
    """The critic is the semantic stage where nothing better exists: calls that match a seed's ground truth
    (BFCL's possible answers) have passed a semantic check that can be computed, and the critic is not asked."""
    return passed_checks(trajectory) and state["seed"].ground_truth is None


def route_after_verify(state: ToolUseState) -> Literal["judge", "accept", "reject"]:
    if any(needs_critic(t, state) for t in state["trajectories"]):
        return "judge"
    return "accept" if any(passed_checks(t) for t in state["trajectories"]) else "reject"


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

    checked = [t for t in state["trajectories"] if needs_critic(t, state)]
    return {"trajectories": list(await asyncio.gather(*(one(t) for t in checked)))}


def route_after_judge(state: ToolUseState, runtime: Runtime[ToolUseContext]) -> Literal["accept", "reject"]:
    threshold = runtime.context.critic_threshold
    reference = state["seed"].ground_truth is not None
    return "accept" if any(trajectory_verdict(t, threshold, reference=reference)[0] == "accepted"
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
    g.add_node(verify)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(accept)
    g.add_node(reject)
    g.add_edge(START, "propose")
    g.add_conditional_edges("propose", on_loop(fan_out), ["solve", "reject"])
    g.add_edge("solve", "verify")
    g.add_conditional_edges("verify", on_loop(route_after_verify), ["judge", "accept", "reject"])
    g.add_conditional_edges("judge", on_loop(route_after_judge), ["accept", "reject"])
    g.add_edge("accept", END)
    g.add_edge("reject", END)
    return g



# --------------------------------------------------------------------------- the runner's interface


def prepare_corpus(recipe: ToolUseRecipe, store: Store) -> None:
    """Ingest `tools.corpus` into the run's store (unchanged documents are skipped); a Ray worker's copy of the
    store holds it as the run ingested it, and is only indexed."""
    corpus = recipe.tools.corpus
    ingest_corpus(store.con, corpus.name, recipe.corpus_paths(), max_chars=corpus.max_chars, overlap=corpus.overlap,
                  copied=store.is_copy)


def store_reads(recipe: ToolUseRecipe, store: Store) -> dict[str, str]:
    if recipe.tools.corpus is None:
        return {}
    prepare_corpus(recipe, store)
    return CORPUS_TABLES


def make_context(recipe: ToolUseRecipe, pool: ModelPool, store: Store | None = None) -> ToolUseContext:
    prompts = FAMILY.prompt_set(recipe)
    roles = recipe.roles
    registry = recipe.registry()
    if recipe.tools.corpus is not None:
        if store is None:
            raise RetrievalError("tools.corpus needs the run's store to search: run the recipe with the runner")
        prepare_corpus(recipe, store)
        corpus = recipe.tools.corpus
        retriever = Retriever(store.con, corpus=corpus.name)
        register_document_search(registry, lambda query, k: retriever.search(query, k), about=corpus.about)
    return ToolUseContext(
        proposer=ToolUseProposer(pool.client(recipe.role_model("proposer")), roles.proposer.sampling(), prompts=prompts),
        solver=ToolUseSolver(pool.client(recipe.role_model("solver")), roles.solver.sampling(), prompts=prompts,
                             max_calls_per_step=roles.solver.max_calls_per_step,
                             constrain_arguments=roles.solver.constrain_arguments, mode=roles.solver.mode),
        critic=ToolUseCritic(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
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


def critic_passed(judgement: ToolJudgement, threshold: float) -> bool:
    """The accept rule of the semantic stage, the one place it is written."""
    return judgement.satisfied and judgement.score >= threshold


def trajectory_verdict(trajectory: Trajectory, threshold: float, *, reference: bool) -> tuple[str, str | None]:
    """(status, reason) of one trajectory as a sample, from what verify and judge kept in it; `reference`: the
    seed has reference calls, which stand in for the critic."""
    if trajectory.error is not None:
        return "error", trajectory.error
    for verifier, (outcome, detail) in trajectory.checks.items():
        if outcome == "failed":
            return "rejected", f"{verifier}: {detail}"
    if reference:
        return "accepted", None  # reference_calls passed: the computed semantic check
    if trajectory.judgement_error is not None:
        return "rejected", f"critic gave no usable verdict: {trajectory.judgement_error}"
    judgement = trajectory.judgement
    if judgement is None:
        return "rejected", "passed the checks but not judged"
    if not critic_passed(judgement, threshold):
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
            ) -> Rows:
    """The samples, chat turns and verdicts of one finished graph instance, plus trajectory key -> sample id."""
    kind, tools, request = state["kind"], state["tools"], state.get("request")
    base = {"request_kind": kind, "tools": tools, "request": request,
            "request_source": "seed" if state["seed"].request is not None else "proposed",
            "ground_truth": state["seed"].ground_truth}
    if request is None:
        sample = sample_row(run_id, seed_id, "request", kind="tool_request", status="error",
                            reason=state.get("request_error"), payload=base)
        return Rows([sample], [], [], {"request": sample.sample_id})
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for trajectory in sorted(state["trajectories"], key=lambda t: int(t.key[1:])):
        status, reason = trajectory_verdict(trajectory, context.critic_threshold,
                                            reference=state["seed"].ground_truth is not None)
        judgement = trajectory.judgement
        sample = sample_row(
            run_id, seed_id, trajectory.key, kind="tool_trajectory", status=status, reason=reason,
            score=judgement.score if judgement else None,
            payload={**base, "attempt": trajectory.key, "stopped": trajectory.stopped,
                     "forced_answer": trajectory.forced_answer, "shape": observed_shape(trajectory),
                     "steps": len(trajectory.decisions), "answer": trajectory.answer,
                     "calls": [c.model_dump() for c in trajectory.calls]})
        samples.append(sample)
        sample_id = sample_ids[trajectory.key] = sample.sample_id
        if trajectory.decisions:
            messages.extend(trajectory_messages(sample_id, request, trajectory))
        verdicts.extend(check_rows(sample_id, trajectory.checks))
        if judgement is not None:
            verdicts.append(critic_row(sample_id, score=judgement.score, detail=judgement.reason,
                                       passed=critic_passed(judgement, context.critic_threshold)))
        elif trajectory.judgement_error is not None:
            verdicts.append(unjudged_row(sample_id, trajectory.judgement_error))
    return Rows(samples, messages, verdicts, sample_ids)


def prompts_unused(recipe: ToolUseRecipe) -> dict[str, str]:
    if recipe.roles.solver.mode == "native":
        return {"tool_use_solver": "solver.mode: native; structured uses it"}
    return {"tool_use_native": "solver.mode: structured; native uses it"}


FAMILY = Family(
    name="tool_use", recipe=ToolUseRecipe, build=build, make_context=make_context, initial_state=initial_state,
    to_rows=to_rows,
    prompts=("tool_use_proposer", "tool_use_solver", "tool_use_native", "tool_use_critic"),
    prompts_unused=prompts_unused, prompt_text=tool_use_roles.PROMPT_TEXT, studio_recipe="demos/tool_use.yaml",
    store_reads=store_reads,
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
