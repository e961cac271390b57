"""Evol-Instruct: evolve (one operation) -> respond -> eliminate (computed rules, information gain) -> next generation.

WizardLM's loop for one seed instruction: each generation draws an operation — in depth (add constraints, deepen,
concretize, increase reasoning steps, complicate the input) or in breadth (a new instruction in the same domain) —
and the evolver rewrites the current instruction with it. The evolution is eliminated when the evolved instruction
copies the evolution prompt's words, when the response gives up and is short or is only stop words, or when the
judge finds no information gain over the parent. A surviving evolution becomes the parent of the next generation;
an eliminated one leaves the parent as it was. Every evolution is a sample whose payload names its parent sample and
operation, so the lineage parent -> child -> operation is a SQL join.
"""

from __future__ import annotations

import operator
import random
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy
from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthgraph.agents import evol_instruct_roles
from synthgraph.agents.evol_instruct_roles import OPERATIONS, Evolver, GainJudge, GainJudgement
from synthgraph.agents.self_instruct_roles import Responder
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import ProposerSettings, RecipeBase, RoleSettings, SeedBase, check_mix, draw_kind
from synthgraph.graphs.self_instruct import ResponderSettings, SeedTask
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, SampleRow, VerdictRow, stable_id
from synthgraph.tools.evolution_checks import copies_prompt, gives_up, only_stop_words

# ------------------------------------------------------------------------------------------------ recipe


class GainJudgeSettings(RoleSettings):
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(200, ge=1, le=32768)


class EvolRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: ProposerSettings = Field(default_factory=lambda: ProposerSettings(temperature=0.7, max_tokens=400),
                                       description="the evolver")
    solver: ResponderSettings = Field(default_factory=ResponderSettings)
    critic: GainJudgeSettings = Field(default_factory=GainJudgeSettings, description="the information-gain judge")


class EvolutionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generations: int = Field(3, ge=1, le=10, description="evolution steps per seed instruction")
    operations: dict[str, float] = Field(default_factory=lambda: {op: 1.0 for op in OPERATIONS},
                                         description=f"share of each operation: {', '.join(OPERATIONS)}")

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, operations: dict[str, float]) -> dict[str, float]:
        unknown = [op for op in operations if op not in OPERATIONS]
        if unknown:
            raise ValueError(f"unknown operation {unknown[0]!r}; known: {', '.join(OPERATIONS)}")
        check_mix(operations)
        return operations


class EvolInstructRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = SeedTask

    graph: Literal["evol_instruct"]
    roles: EvolRoles = Field(default_factory=EvolRoles)
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)


class Evolution(BaseModel):
    key: str                              # g<generation>
    generation: int
    operation: str
    parent_key: str | None                # the surviving evolution it grew from; None: the seed instruction
    parent_instruction: str
    instruction: str | None = None
    error: str | None = None              # the evolver or responder gave nothing usable
    response: str | None = None
    failed_rule: str | None = None        # the elimination rule it broke (a verifier name)
    failed_detail: str | None = None
    gain: GainJudgement | None = None
    gain_error: str | None = None

    @property
    def survived(self) -> bool:
        return self.error is None and self.failed_rule is None and self.gain is not None and not self.gain.equal


class EvolState(TypedDict, total=False):
    seed: SeedTask
    generation: int
    parent_key: str | None
    parent_instruction: str
    current: Evolution | None
    evolutions: Annotated[list[Evolution], operator.add]


@dataclass
class EvolContext:
    evolver: Evolver
    responder: Responder
    judge: GainJudge
    generations: int = 3
    operations: dict[str, float] = field(default_factory=lambda: {op: 1.0 for op in OPERATIONS})


# ------------------------------------------------------------------------------------------------ nodes


async def evolve(state: EvolState, runtime: Runtime[EvolContext]) -> dict:
    ctx, generation = runtime.context, state["generation"]
    rng = random.Random(f"{state['seed'].seed_id}:{generation}")  # a rerun draws the same operations
    current = Evolution(key=f"g{generation}", generation=generation, operation=draw_kind(ctx.operations, rng),
                        parent_key=state.get("parent_key"), parent_instruction=state["parent_instruction"])
    try:
        instruction = await ctx.evolver.evolve(current.parent_instruction, operation=current.operation,
                                               subject=current.key)
    except ModelOutputError as exc:
        return {"current": current.model_copy(update={"error": str(exc)})}
    update = {"instruction": instruction}
    if problem := copies_prompt(instruction):
        update |= {"failed_rule": "not_copied", "failed_detail": problem}
    return {"current": current.model_copy(update=update)}


def route_after_evolve(state: EvolState) -> Literal["respond", "advance"]:
    current = state["current"]
    return "respond" if current.error is None and current.failed_rule is None else "advance"


async def respond(state: EvolState, runtime: Runtime[EvolContext]) -> dict:
    current = state["current"]
    try:
        response = await runtime.context.responder.respond(current.instruction, subject=current.key)
    except ModelOutputError as exc:
        return {"current": current.model_copy(update={"error": str(exc)})}
    update = {"response": response}
    for rule, check in (("response_given", gives_up), ("has_content", only_stop_words)):
        if problem := check(response):
            update |= {"failed_rule": rule, "failed_detail": problem}
            break
    return {"current": current.model_copy(update=update)}


def route_after_respond(state: EvolState) -> Literal["judge_gain", "advance"]:
    current = state["current"]
    return "judge_gain" if current.error is None and current.failed_rule is None else "advance"


async def judge_gain(state: EvolState, runtime: Runtime[EvolContext]) -> dict:
    current = state["current"]
    try:
        gain = await runtime.context.judge.equal(parent=current.parent_instruction, child=current.instruction,
                                                 subject=current.key)
    except ModelOutputError as exc:
        return {"current": current.model_copy(update={"gain_error": str(exc)})}
    update = {"gain": gain}
    if gain.equal:
        update |= {"failed_rule": "information_gain", "failed_detail": f"no information gain: {gain.reason}"}
    return {"current": current.model_copy(update=update)}


def advance(state: EvolState) -> dict:
    """Record the generation; a surviving evolution becomes the parent of the next one."""
    current = state["current"]
    update = {"evolutions": [current], "generation": state["generation"] + 1, "current": None}
    if current.survived:
        update |= {"parent_key": current.key, "parent_instruction": current.instruction}
    return update


def route_after_advance(state: EvolState, runtime: Runtime[EvolContext]) -> Literal["evolve", "__end__"]:
    return "evolve" if state["generation"] < runtime.context.generations else END


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(EvolState, context_schema=EvolContext)
    g.add_node(evolve, retry_policy=model_retry)
    g.add_node(respond, retry_policy=model_retry)
    g.add_node(judge_gain, retry_policy=model_retry)
    g.add_node(advance)
    g.add_edge(START, "evolve")
    g.add_conditional_edges("evolve", on_loop(route_after_evolve), ["respond", "advance"])
    g.add_conditional_edges("respond", on_loop(route_after_respond), ["judge_gain", "advance"])
    g.add_edge("judge_gain", "advance")
    g.add_conditional_edges("advance", on_loop(route_after_advance), ["evolve", END])
    return g


# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: EvolInstructRecipe, pool: ModelPool, store: Store | None = None) -> EvolContext:
    prompts = FAMILY.prompt_set(recipe)
    roles = recipe.roles
    return EvolContext(
        evolver=Evolver(pool.client(recipe.role_model("proposer")), roles.proposer.sampling(), prompts=prompts),
        responder=Responder(pool.client(recipe.role_model("solver")), roles.solver.sampling(), prompts=prompts,
                            template="evol_instruct_respond"),
        judge=GainJudge(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
        generations=recipe.evolution.generations, operations=dict(recipe.evolution.operations),
    )


def initial_state(seed: SeedTask) -> EvolState:
    return {"seed": seed, "generation": 0, "parent_key": None, "parent_instruction": seed.instruction,
            "current": None, "evolutions": []}


# ------------------------------------------------------------------------------------- state -> rows

RULES = ("not_copied", "response_given", "has_content", "information_gain")  # in the order they are checked


def evolution_verdict(evolution: Evolution) -> tuple[str, str | None]:
    if evolution.error is not None:
        return "error", evolution.error
    if evolution.failed_rule is not None:
        return "rejected", f"{evolution.failed_rule}: {evolution.failed_detail}"
    if evolution.gain_error is not None:
        return "rejected", f"information-gain judge gave no usable verdict: {evolution.gain_error}"
    return "accepted", None


def to_rows(state: EvolState, *, run_id: str, seed_id: str, context: EvolContext) -> Rows:
    """One `evol_instruction` sample per generation, its payload naming its parent sample and operation."""
    seed, group_id = state["seed"], stable_id(run_id, seed_id)
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for evolution in state.get("evolutions", []):
        sample_id = stable_id(run_id, seed_id, evolution.key)
        sample_ids[evolution.key] = sample_id
        status, reason = evolution_verdict(evolution)
        samples.append(SampleRow(
            sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id, kind="evol_instruction",
            status=status, reason=reason,
            payload={"instruction": evolution.instruction, "operation": evolution.operation,
                     "generation": evolution.generation, "parent_instruction": evolution.parent_instruction,
                     "parent_sample_id": stable_id(run_id, seed_id, evolution.parent_key)
                     if evolution.parent_key else None,
                     "seed_instruction": seed.instruction}))
        if evolution.instruction is None:
            continue
        messages.append(MessageRow(sample_id=sample_id, turn=0, role="user", content=evolution.instruction))
        if evolution.response is not None:
            messages.append(MessageRow(sample_id=sample_id, turn=1, role="assistant", content=evolution.response))
        reached = RULES.index(evolution.failed_rule) if evolution.failed_rule else len(RULES) - 1
        for rule in RULES[:reached + 1]:
            if rule == "information_gain" and evolution.gain is None:
                if evolution.gain_error is not None:
                    verdicts.append(VerdictRow(sample_id=sample_id, verifier=rule, outcome="unchecked",
                                               detail=evolution.gain_error))
                continue
            if rule != "not_copied" and evolution.response is None:
                continue
            failed = rule == evolution.failed_rule
            detail = evolution.failed_detail if failed else (evolution.gain.reason if rule == "information_gain"
                                                              and evolution.gain else "")
            verdicts.append(VerdictRow(sample_id=sample_id, verifier=rule, outcome="failed" if failed else "passed",
                                       detail=detail or ""))
    return Rows(samples, messages, verdicts, sample_ids)


FAMILY = Family(
    name="evol_instruct", recipe=EvolInstructRecipe, build=build, make_context=make_context,
    initial_state=initial_state, to_rows=to_rows,
    prompts=("evol_instruct_evolve", "evol_instruct_respond", "evol_instruct_gain"),
    prompt_text=evol_instruct_roles.PROMPT_TEXT, studio_recipe="demos/evol_instruct.yaml",
    config={"recursion_limit": 100},
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
