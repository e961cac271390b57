"""Declarative pipelines: a recipe's YAML graph of llm / check / judge nodes, compiled into a LangGraph StateGraph.

    seeds -> node -> node -> ... -> accept | reject | review

An `llm` node with `samples: k` fans out with Send into k candidates; every later node runs once per live
candidate (at once, in one step), a check or judge node's `select` rule keeps those that pass (all, the best, the
first), and a route on a node's outcome (`passed` / `failed` / `unchecked`) picks the next node — a loop back is
bounded by `max_visits`. A plain `a -> b` from a check goes on when it passes, to reject when it fails, and to
review when it could not be checked. Every candidate becomes a sample: accepted when the path ended in accept
and it was kept, rejected otherwise (with the reason), with one verdict row per check and judge.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal, TypedDict

import jinja2
import jsonschema
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel, Field, RootModel

from synthgraph.agents.models import ModelClient, ModelOutputError, ModelPool, Sampling
from synthgraph.agents.prompting import RenderedPrompt
from synthgraph.graphs import pipeline_checks
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.family import Family, Rows
from synthgraph.graphs.pipeline_checks import Verdict, unchecked
from synthgraph.graphs.pipeline_spec import LITERAL_ARGUMENTS, TEMPLATES, NodeSpec, Outcome, PipelineRecipe, as_template
from synthgraph.store.rows import MessageRow, SampleRow, VerdictRow, stable_id

# ------------------------------------------------------------------------------------------------ state


class Candidate(BaseModel):
    """One line of work after a fan-out: its own outputs and verdicts on top of the seed-level ones."""

    key: str                                   # r<visit>k<branch>, prefixed by its parent's key: stable across reruns
    born: int                                  # the fan-out (epoch) it came from; older ones are no longer live
    maker: str                                 # the llm node that fanned it out
    parent: str | None = None                  # the candidate it branched from (None: from the seed)
    outputs: dict[str, Any] = Field(default_factory=dict)
    verdicts: dict[str, Verdict] = Field(default_factory=dict)
    error: str | None = None                   # a model call of its own was refused on every try
    dropped: str | None = None                 # why a selection left it out
    expanded: bool = False                     # a later fan-out branched it: its children are the samples


class Branch(TypedDict):
    key: str
    epoch: int
    visit: int
    parent: Candidate | None
    bind: dict[str, Any]                       # the for_each value of this branch


def _merge(left: dict, right: dict) -> dict:
    return {**left, **right}


def _latest(left: Any, right: Any) -> Any:
    return right


def _highest(left: int, right: int) -> int:
    return max(left, right)


class PipelineState(TypedDict, total=False):
    seed: dict[str, Any]
    outputs: Annotated[dict[str, Any], _merge]            # node -> output, for nodes that ran before any fan-out
    verdicts: Annotated[dict[str, Verdict], _merge]       # node -> verdict, likewise
    errors: Annotated[dict[str, str], _merge]
    candidates: Annotated[list[Candidate], merge_by_key]  # fan-in of the Send branches
    epoch: Annotated[int, _highest]
    visits: Annotated[dict[str, int], _merge]
    outcomes: Annotated[dict[str, Outcome], _merge]       # node -> its outcome on its last visit (routes read it)
    last: Annotated[str, _latest]                         # the node that ran last (a terminal's reason)
    outcome: Literal["accepted", "rejected", "review"]
    branch: Branch                                        # only in a Send's input: which candidate to make


def live(state: PipelineState) -> list[Candidate]:
    epoch = state.get("epoch", 0)
    return sorted((c for c in state.get("candidates", []) if c.born == epoch and not c.dropped and not c.expanded
                   and c.error is None), key=lambda c: c.key)


def scope(state: PipelineState, candidate: Candidate | None) -> dict[str, Any]:
    """What a template sees: the seed's fields and the outputs of the nodes that ran (the candidate's own last)."""
    return {**state["seed"], **state.get("outputs", {}), **(candidate.outputs if candidate else {})}


@lru_cache(maxsize=1024)
def template(text: str) -> jinja2.Template:
    return TEMPLATES.from_string(text)


def render(value: Any, variables: dict[str, Any]) -> Any:
    """A check argument or emit entry rendered: strings are templates, lists and mappings render inside."""
    if isinstance(value, str):
        return template(value).render(variables)
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------------ context


class JsonObject(RootModel[dict[str, Any]]):
    """A structured output, parsed; the node's JSON Schema is what the engine holds the model to."""


JUDGE_SYSTEM = ("You are a strict, fair judge of the quality of generated data. Score what you are shown against "
                "the rubric from 0 (useless) to 10 (perfect). Give a one-sentence reason first, then the score.")
PAIRWISE_SYSTEM = ("You are a strict, fair judge of the quality of generated data. Compare candidates A and B "
                   "against the rubric. Give a one-sentence reason first, then the winner: A, B, or tie.")
JUDGE_SCHEMA = {"type": "object", "properties": {"reason": {"type": "string"},
                                                 "score": {"type": "integer", "minimum": 0, "maximum": 10}},
                "required": ["reason", "score"], "additionalProperties": False}
PAIRWISE_SCHEMA = {"type": "object", "properties": {"reason": {"type": "string"},
                                                    "winner": {"enum": ["A", "B", "tie"]}},
                   "required": ["reason", "winner"], "additionalProperties": False}
PROMPT_TEXT = {"judge_system": JUDGE_SYSTEM, "pairwise_system": PAIRWISE_SYSTEM}


@dataclass
class PipelineContext:
    recipe: PipelineRecipe
    roles: dict[str, tuple[ModelClient, Sampling]] = field(default_factory=dict)
    _validators: dict[str, jsonschema.Draft202012Validator] = field(default_factory=dict)  # per node, built once

    async def ask(self, node: str, role: str, system: str | None, user: str, schema: dict[str, Any] | None,
                  subject: str, keep_truncated: bool = False) -> dict[str, Any]:
        """One model call through the shared call path (lineage, retries), as the node's output."""
        client, sampling = self.roles[role]
        messages = RenderedPrompt(f"pipeline_{node}", [*([SystemMessage(content=system)] if system else []),
                                                       HumanMessage(content=user)])
        if schema is None:
            completion = await client.complete(messages, role=role, sampling=sampling, subject=subject,
                                               keep_truncated=keep_truncated)
            return {"text": completion.text}
        validator = self._validators.get(node) or self._validators.setdefault(
            node, jsonschema.Draft202012Validator(schema))

        def fits(text: str) -> str | None:
            error = jsonschema.exceptions.best_match(validator.iter_errors(json.loads(text)))
            return None if error is None else f"structured output does not fit its schema: {error.message}"

        completion = await client.complete(messages, role=role, sampling=sampling, schema=JsonObject,
                                           json_schema=schema, check=fits, subject=subject)
        return completion.parsed.root


# ------------------------------------------------------------------------------------------------ nodes


def _subject(candidate: Candidate | None) -> str:
    return candidate.key if candidate else "seed"


def llm_node(name: str, spec: NodeSpec):
    llm = spec.llm

    async def produce(state: PipelineState, candidate: Candidate | None, ctx: PipelineContext,
                      key: str) -> dict[str, Any] | str:
        """The node's output for one candidate (or the seed), or why there is none."""
        variables = scope(state, candidate)
        try:
            system = template(llm.system).render(variables) if llm.system else None
            user = template(llm.user).render(variables)
        except jinja2.UndefinedError as exc:
            return f"nodes.{name}.llm: {exc.message}"
        try:
            return await ctx.ask(name, llm.role, system, user, llm.json_schema, key,
                                 keep_truncated=llm.at_max_tokens == "keep" and llm.json_schema is None)
        except ModelOutputError as exc:
            return str(exc)

    async def fan_out_branch(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict:
        branch = state["branch"]
        parent = branch["parent"]
        base = {**(parent.outputs if parent else {}), **branch["bind"]}
        output = await produce(state, Candidate(key=branch["key"], born=0, maker=name, outputs=base),
                               runtime.context, branch["key"])
        candidate = Candidate(key=branch["key"], born=branch["epoch"], maker=name,
                              parent=parent.key if parent else None, verdicts=dict(parent.verdicts) if parent else {},
                              outputs={**base, name: output} if isinstance(output, dict) else dict(base),
                              error=None if isinstance(output, dict) else output)
        expanded = [parent.model_copy(update={"expanded": True})] if parent else []
        return {"candidates": [*expanded, candidate], "epoch": branch["epoch"], "visits": {name: branch["visit"]},
                "last": name}

    async def each(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict:
        visit = state.get("visits", {}).get(name, 0) + 1
        done = {"visits": {name: visit}, "last": name}
        if state.get("epoch", 0) == 0:
            output = await produce(state, None, runtime.context, "seed")
            if isinstance(output, dict):
                return {**done, "outputs": {name: output}, "outcomes": {name: "passed"}}
            return {**done, "errors": {name: output}, "outcomes": {name: "failed"}}
        candidates = live(state)
        outputs = await asyncio.gather(*(produce(state, c, runtime.context, c.key) for c in candidates))
        updated = [c.model_copy(update={"outputs": {**c.outputs, name: o}}) if isinstance(o, dict)
                   else c.model_copy(update={"error": o}) for c, o in zip(candidates, outputs)]
        outcome = "passed" if any(isinstance(o, dict) for o in outputs) else "failed"
        return {**done, "candidates": updated, "outcomes": {name: outcome}}

    return fan_out_branch if llm.fans_out else each


def check_node(name: str, spec: NodeSpec):
    verifier = spec.verifier
    args = spec.check[verifier] or {}

    async def verdict_of(state: PipelineState, candidate: Candidate | None, ctx: PipelineContext) -> Verdict:
        try:
            variables = scope(state, candidate)
            rendered = {k: v if (verifier, k) in LITERAL_ARGUMENTS else render(v, variables) for k, v in args.items()}
        except jinja2.UndefinedError as exc:
            return unchecked(f"nodes.{name}.check.{verifier}: {exc.message}")
        return await pipeline_checks.run_check(verifier, rendered, ctx.recipe.checks)

    async def group_verdicts(state: PipelineState, candidates: list[Candidate]) -> list[Verdict]:
        values = []
        for c in candidates:
            try:
                values.append(render(args["value"], scope(state, c)))
            except jinja2.UndefinedError as exc:
                return [unchecked(f"nodes.{name}.check.majority: {exc.message}") for _ in candidates]
        return pipeline_checks.majority(values, min_share=args.get("min_share", 0.5))

    async def check(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict:
        ctx = runtime.context
        if state.get("epoch", 0) == 0:
            verdict = (unchecked("majority needs candidates: put it after an llm node with samples: k")
                       if verifier == "majority" else await verdict_of(state, None, ctx))
            return seed_verdict(state, name, verdict)
        candidates = live(state)
        verdicts = (await group_verdicts(state, candidates) if verifier == "majority" else
                    await asyncio.gather(*(verdict_of(state, c, ctx) for c in candidates)))
        return select(state, name, spec.select, candidates, verdicts)

    return check


def judge_node(name: str, spec: NodeSpec):
    judge = spec.judge

    def prompt(shown: str) -> str:
        return f"Rubric: {judge.rubric}\n\n{shown}"

    async def score(state: PipelineState, candidate: Candidate | None, ctx: PipelineContext) -> Verdict:
        try:
            shown = template(judge.show).render(scope(state, candidate))
        except jinja2.UndefinedError as exc:
            return unchecked(f"nodes.{name}.judge.show: {exc.message}")
        try:
            reply = await ctx.ask(name, judge.role, judge.system or JUDGE_SYSTEM, prompt(shown), JUDGE_SCHEMA,
                                  _subject(candidate))
        except ModelOutputError as exc:
            return unchecked(f"the judge gave no usable verdict: {exc}")
        outcome = "passed" if reply["score"] >= judge.threshold else "failed"
        return Verdict(outcome=outcome, score=reply["score"],
                       reason=f"score {reply['score']} {'>=' if outcome == 'passed' else '<'} {judge.threshold:g}: "
                              f"{reply['reason']}")

    async def compare(state: PipelineState, candidates: list[Candidate], ctx: PipelineContext) -> list[Verdict]:
        if len(candidates) < 2:
            return [unchecked("a pairwise judge needs two candidates")] * len(candidates)
        a, b = candidates[:2]
        try:
            shown = [template(judge.show).render(scope(state, c)) for c in (a, b)]
            reply = await ctx.ask(name, judge.role, judge.system or PAIRWISE_SYSTEM,
                                  prompt(f"Candidate A:\n{shown[0]}\n\nCandidate B:\n{shown[1]}"), PAIRWISE_SCHEMA,
                                  a.key)
        except jinja2.UndefinedError as exc:
            return [unchecked(f"nodes.{name}.judge.show: {exc.message}")] * len(candidates)
        except ModelOutputError as exc:
            return [unchecked(f"the judge gave no usable verdict: {exc}")] * len(candidates)
        winner = reply["winner"]
        rest = [unchecked("not compared: a pairwise judge compares the first two")] * (len(candidates) - 2)
        if winner == "tie":
            return [unchecked(f"tie: {reply['reason']}", winner="tie")] * 2 + rest
        return [Verdict(outcome="passed" if side == winner else "failed", score=1.0 if side == winner else 0.0,
                        reason=f"{'preferred' if side == winner else 'not preferred'}: {reply['reason']}",
                        extra={"winner": winner}) for side in "AB"] + rest

    async def judge_step(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict:
        ctx = runtime.context
        if state.get("epoch", 0) == 0:
            verdict = (unchecked("a pairwise judge needs candidates: put it after an llm node with samples: 2")
                       if judge.pairwise else await score(state, None, ctx))
            return seed_verdict(state, name, verdict)
        candidates = live(state)
        verdicts = (await compare(state, candidates, ctx) if judge.pairwise else
                    await asyncio.gather(*(score(state, c, ctx) for c in candidates)))
        return select(state, name, spec.select, candidates, verdicts)

    return judge_step


def seed_verdict(state: PipelineState, name: str, verdict: Verdict) -> dict:
    return {"verdicts": {name: verdict}, "outputs": {name: verdict.output()}, "outcomes": {name: verdict.outcome},
            "visits": {name: state.get("visits", {}).get(name, 0) + 1}, "last": name}


def select(state: PipelineState, name: str, rule: str, candidates: list[Candidate], verdicts: list[Verdict]) -> dict:
    """Record each candidate's verdict; of those that passed keep all, the best by score, or the first. When none
    passed nobody is dropped: the route decides (a retry, or reject with every candidate's reason)."""
    judged = [c.model_copy(update={"verdicts": {**c.verdicts, name: v}, "outputs": {**c.outputs, name: v.output()}})
              for c, v in zip(candidates, verdicts)]
    passing = [c for c, v in zip(judged, verdicts) if v.outcome == "passed"]
    if passing:
        keep = {c.key for c in passing}
        if rule == "best":
            keep = {max(passing, key=lambda c: (c.verdicts[name].score or 0, -passing.index(c))).key}
        elif rule == "first":
            keep = {passing[0].key}
        judged = [c if c.key in keep else c.model_copy(update={"dropped": (
            f"{name}: {c.verdicts[name].outcome}: {c.verdicts[name].reason}" if c.verdicts[name].outcome != "passed"
            else f"{name}: not selected ({rule})")}) for c in judged]
        outcome = "passed"
    else:
        outcome = "failed" if any(v.outcome == "failed" for v in verdicts) or not verdicts else "unchecked"
    return {"candidates": judged, "outcomes": {name: outcome}, "last": name,
            "visits": {name: state.get("visits", {}).get(name, 0) + 1}}


def terminal(outcome: Literal["accepted", "rejected", "review"]):
    # Async, like the routing functions: LangGraph runs a sync function in a worker thread, a hop per seed.
    async def end(state: PipelineState) -> dict:
        return {"outcome": outcome}
    end.__name__ = {"accepted": "accept", "rejected": "reject", "review": "review"}[outcome]
    return end


# ------------------------------------------------------------------------------------------------ routing


def fan_out(recipe: PipelineRecipe, target: str, state: PipelineState) -> list[Send]:
    """The target llm node's branches (k per for_each value) per live candidate, or for the seed: a new epoch. A
    loop back to it branches again from the parents of its last round, not from that round's candidates."""
    visit = state.get("visits", {}).get(target, 0) + 1
    epoch = state.get("epoch", 0) + 1
    candidates = state.get("candidates", [])
    if visit > 1:
        last_round = [c for c in candidates if c.maker == target and c.key.rsplit(".", 1)[-1].startswith(
            f"r{visit - 2}k")]
        by_key = {c.key: c for c in candidates}
        parents = [by_key.get(key) for key in dict.fromkeys(c.parent for c in last_round)] or [None]
    else:
        parents = live(state) if state.get("epoch", 0) else [None]
    return [Send(target, {**state, "branch": Branch(key=f"{p.key + '.' if p else ''}r{visit - 1}k{i}", epoch=epoch,
                                                    visit=visit, parent=p, bind=bind)})
            for p in parents for i, bind in enumerate(recipe.nodes[target].llm.branches)]


def router(recipe: PipelineRecipe, name: str):
    """The named routing function after `name`: its route on the outcome, or its plain next step."""
    shape = recipe.shape
    route = shape.routes.get(name)

    def next_step(state: PipelineState) -> str:
        outcome = state.get("outcomes", {}).get(name, "passed")
        if route is None:
            return {"passed": shape.next[name], "failed": "reject", "unchecked": "review"}[outcome]
        target = route.targets()[outcome]
        visits = state.get("visits", {})
        if route.max_visits is not None and visits.get(name, 0) >= route.max_visits and visits.get(target, 0) > 0:
            return route.exhausted
        return target

    async def route_after(state: PipelineState):
        target = next_step(state)
        if target in recipe.nodes and recipe.nodes[target].llm and recipe.nodes[target].llm.fans_out:
            return fan_out(recipe, target, state)
        return target

    route_after.__name__ = f"route_after_{name}"
    llm = recipe.nodes[name].kind == "llm"  # an llm node passes or fails (refused); it is never unchecked
    destinations = (list(dict.fromkeys([*route.targets().values(), route.exhausted])) if route
                    else [shape.next[name], "reject"] if llm else [shape.next[name], "reject", "review"])
    return route_after, list(dict.fromkeys(destinations))


def build(recipe: PipelineRecipe) -> StateGraph:
    recipe.check_structure()
    shape = recipe.shape
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(PipelineState, context_schema=PipelineContext)
    makers = {"llm": llm_node, "check": check_node, "judge": judge_node}
    fanned = {n for n, spec in recipe.nodes.items() if spec.llm and spec.llm.fans_out}
    for name, spec in recipe.nodes.items():
        g.add_node(name, makers[spec.kind](name, spec), retry_policy=model_retry if spec.kind != "check" else None)
    for outcome in ("accepted", "rejected", "review"):
        g.add_node(terminal(outcome))
        g.add_edge(terminal(outcome).__name__, END)
    if shape.entry in fanned:
        async def fan_out_first(state: PipelineState) -> list[Send]:
            return fan_out(recipe, shape.entry, state)

        g.add_conditional_edges(START, fan_out_first, [shape.entry])
    else:
        g.add_edge(START, shape.entry)
    for name in recipe.nodes:
        if name in fanned:
            # After its k branches the graph goes on once (the step barrier); routing happens at the next node.
            g.add_edge(name, shape.next[name])
        else:
            route_after, destinations = router(recipe, name)
            g.add_conditional_edges(name, route_after, destinations)
    return g


# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: PipelineRecipe, pool: ModelPool, store=None) -> PipelineContext:
    return PipelineContext(recipe=recipe, roles={
        role: (pool.client(recipe.role_model(role)), settings.sampling()) for role, settings in recipe.roles.items()})


def initial_state(seed) -> PipelineState:
    return {"seed": seed.model_dump(exclude_none=True), "outputs": {}, "verdicts": {}, "errors": {},
            "candidates": [], "epoch": 0, "visits": {}, "outcomes": {}}


def _status(state: PipelineState, candidate: Candidate | None) -> tuple[str, str | None]:
    outcome = state.get("outcome", "rejected")
    epoch = state.get("epoch", 0)
    verdicts = {**state.get("verdicts", {}), **(candidate.verdicts if candidate else {})}
    if candidate is None and state.get("errors"):
        node, error = next(iter(state["errors"].items()))
        return "error", f"{node}: {error}"
    if candidate is not None:
        if candidate.error is not None:
            return "error", candidate.error
        if candidate.dropped is not None:
            return "rejected", candidate.dropped
        if candidate.born != epoch:
            return "rejected", next((f"{n}: {v.reason}" for n, v in verdicts.items() if v.outcome != "passed"),
                                    "superseded by a later round")
    last = state.get("last", "")
    reason = next((f"{n}: {v.outcome}: {v.reason}" for n, v in reversed(verdicts.items()) if v.outcome != "passed"),
                  f"ended after {last}")
    if outcome == "accepted":
        return "accepted", None
    if outcome == "review":
        return "rejected", f"held for review: {reason}"
    return "rejected", reason


def to_rows(state: PipelineState, *, run_id: str, seed_id: str, context: PipelineContext) -> Rows:
    """One sample per candidate (one for the seed when nothing fanned out), its chat turns and its verdicts."""
    emit = context.recipe.emit
    group_id = stable_id(run_id, seed_id)
    seed_level = state.get("verdicts", {})
    candidates = sorted((c for c in state.get("candidates", []) if not c.expanded), key=lambda c: (c.born, c.key))
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for candidate in candidates or [None]:
        key = _subject(candidate)
        sample_id = stable_id(run_id, seed_id, key)
        sample_ids[key] = sample_id
        status, reason = _status(state, candidate)
        variables = scope(state, candidate)
        turns = []
        for role, text in emit.turns():
            try:
                turns.append((role, template(text).render(variables)))
            except jinja2.UndefinedError as exc:
                if status == "accepted":  # an accepted sample must carry its whole chat record
                    status, reason = "error", f"emit: {exc.message}"
        payload = {}
        for name, text in emit.payload.items():
            try:
                payload[name] = template(as_template(text)).render(variables)
            except jinja2.UndefinedError:
                payload[name] = None
        all_verdicts = {**seed_level, **(candidate.verdicts if candidate else {})}
        scores = [v.score for n, v in all_verdicts.items() if v.score is not None
                  and context.recipe.nodes[n].kind == "judge"]
        samples.append(SampleRow(
            sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id, kind=emit.kind, status=status,
            reason=reason, score=scores[-1] if scores else None,
            payload={**(payload if emit.payload else {"outputs": {**state.get("outputs", {}),
                                                                  **(candidate.outputs if candidate else {})}}),
                     "candidate": key, "path_outcome": state.get("outcome"), "visits": state.get("visits", {})}))
        messages.extend(MessageRow(sample_id=sample_id, turn=i, role=role, content=content)
                        for i, (role, content) in enumerate(turns))
        verdicts.extend(VerdictRow(sample_id=sample_id, verifier=node, outcome=v.outcome, score=v.score,
                                   detail=v.reason) for node, v in all_verdicts.items())
    return Rows(samples, messages, verdicts, sample_ids)


FAMILY = Family(
    name="pipeline", recipe=PipelineRecipe, build=build, make_context=make_context, initial_state=initial_state,
    to_rows=to_rows, prompt_text=PROMPT_TEXT, studio_recipe="demos/two_step.yaml",
    config={"recursion_limit": 200}, graph_from_recipe=True,
)
