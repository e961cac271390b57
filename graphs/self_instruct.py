"""Self-Instruct: propose from pool examples -> filter (well-formed, novel) -> respond ×kept -> judge -> next round.

From a seed task and examples drawn from the instruction pool (the seed tasks, every instruction the store already
kept, and those kept so far in this run), the proposer writes `growth.per_round` new instructions. Each is kept only
if it is well-formed (Self-Instruct's filters: length, a text-only task, a clean start) and novel: its ROUGE-L with
every instruction in the pool is below `growth.max_similarity`. A kept instruction joins the pool at once, so the
next proposal — in this graph or a concurrent one — is checked against it. The solver answers each kept
instruction and the critic says whether it is answerable and scores the answer. Rounds repeat up to
`growth.rounds` per seed while the pool is below `growth.max_pool`; a rerun resumes (finished seeds are skipped,
and their kept instructions are in the pool from the store).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgraph.agents import self_instruct_roles
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.agents.self_instruct_roles import Critic, InstructionJudgement, InstructionWriter, Responder
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import (CriticSettings, ProposerSettings, RecipeBase, RoleSettings, SeedBase,
                                       load_seeds)
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, SampleRow, VerdictRow, stable_id
from synthgraph.tools.instructions import InstructionPool, instruction_problem

# ------------------------------------------------------------------------------------------------ recipe


class ResponderSettings(RoleSettings):
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=1, le=32768)


class SelfInstructRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: ProposerSettings = Field(default_factory=lambda: ProposerSettings(temperature=1.0, max_tokens=512))
    solver: ResponderSettings = Field(default_factory=ResponderSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)


class GrowthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1, le=20, description="proposal rounds per seed task")
    per_round: int = Field(4, ge=1, le=20, description="new instructions asked for per round")
    examples: int = Field(4, ge=1, le=16, description="pool instructions shown to the proposer (the seed's first)")
    max_similarity: float = Field(0.7, gt=0, le=1, description="ROUGE-L an instruction must stay below against "
                                                                 "every instruction in the pool and the store")
    max_pool: int = Field(500, ge=1, description="stop proposing once the pool holds this many instructions")
    min_words: int = Field(3, ge=1)
    max_words: int = Field(150, ge=1)

    @model_validator(mode="after")
    def _word_bounds(self):
        if self.min_words > self.max_words:
            raise ValueError(f"growth.min_words ({self.min_words}) is above growth.max_words ({self.max_words})")
        return self


class SeedTask(SeedBase):
    """A seed task: an instruction, optionally with an example input and output (kept in the payload)."""

    instruction: str = Field(min_length=1)
    input: str | None = None
    output: str | None = None


class SelfInstructRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = SeedTask

    graph: Literal["self_instruct"]
    roles: SelfInstructRoles = Field(default_factory=SelfInstructRoles)
    growth: GrowthSettings = Field(default_factory=GrowthSettings)


class Candidate(BaseModel):
    key: str                              # r<round>c<index>: stable, so sample ids survive a rerun
    round: int
    instruction: str
    problem: str | None = None            # why it is not well-formed
    kept: bool = False                    # well-formed and novel: it joined the pool
    similarity: float | None = None       # highest ROUGE-L against the pool when it was checked
    nearest: str | None = None
    response: str | None = None
    error: str | None = None              # the solver's output was refused on every try
    judgement: InstructionJudgement | None = None
    judge_error: str | None = None


class GrowState(TypedDict, total=False):
    seed: SeedTask
    round: int
    candidates: Annotated[list[Candidate], merge_by_key]
    propose_errors: dict[int, str]        # round -> why the proposer gave nothing usable


class RespondTask(TypedDict):
    candidate: Candidate


@dataclass
class SelfInstructContext:
    writer: InstructionWriter
    responder: Responder
    critic: Critic
    pool: InstructionPool
    rounds: int = 2
    per_round: int = 4
    examples: int = 4
    max_pool: int = 500
    min_words: int = 3
    max_words: int = 150
    critic_threshold: float = 6


# ------------------------------------------------------------------------------------------------ nodes


def pool_examples(seed: SeedTask, pool: InstructionPool, k: int, round_: int) -> list[str]:
    """The seed's instruction and k-1 others drawn from the pool (seeded: a rerun shows the same ones)."""
    others = [text for text in pool.instructions if text != seed.instruction]
    drawn = random.Random(f"{seed.seed_id}:{round_}").sample(others, min(k - 1, len(others)))
    return [seed.instruction, *drawn]


async def propose(state: GrowState, runtime: Runtime[SelfInstructContext]) -> dict:
    ctx, round_ = runtime.context, state.get("round", 0)
    examples = pool_examples(state["seed"], ctx.pool, ctx.examples, round_)
    try:
        texts = await ctx.writer.write(examples, count=ctx.per_round, subject=f"r{round_}")
    except ModelOutputError as exc:
        return {"propose_errors": {**state.get("propose_errors", {}), round_: str(exc)}}
    return {"candidates": [Candidate(key=f"r{round_}c{i}", round=round_, instruction=text)
                           for i, text in enumerate(texts[:ctx.per_round])]}


async def filter_candidates(state: GrowState, runtime: Runtime[SelfInstructContext]) -> dict:
    """Well-formed first, then novel. Async with no await inside: it runs on the event loop, not in a worker
    thread, so `admit` checks and adds for one graph instance while no other one runs."""
    ctx, round_ = runtime.context, state.get("round", 0)
    checked = []
    for candidate in (c for c in state["candidates"] if c.round == round_):
        problem = instruction_problem(candidate.instruction, min_words=ctx.min_words, max_words=ctx.max_words)
        if problem is not None:
            checked.append(candidate.model_copy(update={"problem": problem}))
            continue
        check = ctx.pool.admit(candidate.instruction)
        checked.append(candidate.model_copy(update={"kept": check.novel, "similarity": check.similarity,
                                                    "nearest": check.nearest}))
    return {"candidates": checked}


def route_from_start(state: GrowState, runtime: Runtime[SelfInstructContext]) -> Literal["propose", "finish"]:
    """A pool already at `max_pool` (the seed tasks, or what earlier seeds and runs kept) takes no more proposals."""
    return "propose" if len(runtime.context.pool) < runtime.context.max_pool else "finish"


def _more_rounds(state: GrowState, ctx: SelfInstructContext) -> bool:
    return state.get("round", 0) + 1 < ctx.rounds and len(ctx.pool) < ctx.max_pool


def fan_out(state: GrowState, runtime: Runtime[SelfInstructContext]
            ) -> list[Send] | Literal["next_round", "finish"]:
    round_ = state.get("round", 0)
    kept = [c for c in state["candidates"] if c.round == round_ and c.kept]
    if kept:
        return [Send("respond", RespondTask(candidate=c)) for c in kept]
    return "next_round" if _more_rounds(state, runtime.context) else "finish"


async def respond(task: RespondTask, runtime: Runtime[SelfInstructContext]) -> dict:
    candidate = task["candidate"]
    try:
        response = await runtime.context.responder.respond(candidate.instruction, subject=candidate.key)
        return {"candidates": [candidate.model_copy(update={"response": response})]}
    except ModelOutputError as exc:
        return {"candidates": [candidate.model_copy(update={"error": str(exc)})]}


async def judge(state: GrowState, runtime: Runtime[SelfInstructContext]) -> dict:
    critic, round_ = runtime.context.critic, state.get("round", 0)
    pending = [c for c in state["candidates"] if c.round == round_ and c.response is not None and c.judgement is None]

    async def judge_one(candidate: Candidate) -> Candidate:
        try:
            judgement = await critic.judge(instruction=candidate.instruction, response=candidate.response,
                                           subject=candidate.key)
            return candidate.model_copy(update={"judgement": judgement})
        except ModelOutputError as exc:
            return candidate.model_copy(update={"judge_error": str(exc)})

    return {"candidates": list(await asyncio.gather(*(judge_one(c) for c in pending)))}


def route_after_judge(state: GrowState, runtime: Runtime[SelfInstructContext]) -> Literal["next_round", "finish"]:
    return "next_round" if _more_rounds(state, runtime.context) else "finish"


def next_round(state: GrowState) -> dict:
    return {"round": state.get("round", 0) + 1}


def finish(state: GrowState) -> dict:
    return {}


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(GrowState, context_schema=SelfInstructContext)
    g.add_node(propose, retry_policy=model_retry)
    g.add_node("filter", filter_candidates)
    g.add_node(respond, input_schema=RespondTask, retry_policy=model_retry)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(next_round)
    g.add_node(finish)
    g.add_conditional_edges(START, on_loop(route_from_start), ["propose", "finish"])
    g.add_edge("propose", "filter")
    g.add_conditional_edges("filter", on_loop(fan_out), ["respond", "next_round", "finish"])
    g.add_edge("respond", "judge")
    g.add_conditional_edges("judge", on_loop(route_after_judge), ["next_round", "finish"])
    g.add_edge("next_round", "propose")
    g.add_edge("finish", END)
    return g


# --------------------------------------------------------------------------- the runner's interface

KEPT_KIND = "self_instruct"
CANDIDATE_KIND = "instruction_candidate"


def store_reads(recipe: SelfInstructRecipe, store: Store) -> dict[str, str]:
    return {"samples": f"SELECT * FROM samples WHERE kind = '{KEPT_KIND}'"}   # what `stored_instructions` reads


def stored_instructions(store: Store | None) -> list[str]:
    """Every instruction a Self-Instruct run already kept in this store (any run): new ones must be novel to them."""
    if store is None:
        return []
    rows = store.con.execute("SELECT DISTINCT payload->>'instruction' FROM samples WHERE kind = ? "
                             "ORDER BY 1", [KEPT_KIND]).fetchall()
    return [text for (text,) in rows if text]


def make_context(recipe: SelfInstructRecipe, pool: ModelPool, store: Store | None = None) -> SelfInstructContext:
    prompts = FAMILY.prompt_set(recipe)
    roles, growth = recipe.roles, recipe.growth
    seed_tasks = [s.instruction for s in load_seeds(recipe, base=recipe._base, where=f"recipe {recipe.name}")]
    return SelfInstructContext(
        writer=InstructionWriter(pool.client(recipe.role_model("proposer")), roles.proposer.sampling(), prompts=prompts,
                                 max_words=growth.max_words),
        responder=Responder(pool.client(recipe.role_model("solver")), roles.solver.sampling(), prompts=prompts),
        critic=Critic(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
        pool=InstructionPool(seed_tasks + stored_instructions(store), max_similarity=growth.max_similarity),
        rounds=growth.rounds, per_round=growth.per_round, examples=growth.examples, max_pool=growth.max_pool,
        min_words=growth.min_words, max_words=growth.max_words, critic_threshold=roles.critic.threshold,
    )


def initial_state(seed: SeedTask) -> GrowState:
    return {"seed": seed, "round": 0, "candidates": []}


# ------------------------------------------------------------------------------------- state -> rows


def candidate_verdict(candidate: Candidate, threshold: float, max_similarity: float) -> tuple[str, str | None]:
    """(status, reason) of one candidate instruction as a sample."""
    if candidate.problem is not None:
        return "rejected", f"not well-formed: {candidate.problem}"
    if not candidate.kept:
        return "rejected", (f"not novel: ROUGE-L {candidate.similarity:g} >= {max_similarity:g} with "
                            f"{candidate.nearest!r}")
    if candidate.error is not None:
        return "error", candidate.error
    if candidate.judge_error is not None:
        return "rejected", f"critic gave no usable verdict: {candidate.judge_error}"
    judgement = candidate.judgement
    if judgement is None:
        return "rejected", "kept but not judged"
    if not judgement.answerable:
        return "rejected", f"not answerable: {judgement.reason}"
    if judgement.score < threshold:
        return "rejected", f"critic score {judgement.score} < {threshold:g}: {judgement.reason}"
    return "accepted", None


def to_rows(state: GrowState, *, run_id: str, seed_id: str, context: SelfInstructContext) -> Rows:
    """A `self_instruct` sample per kept instruction (with its response), an `instruction_candidate` sample per
    one the filters dropped, and one per round whose proposal failed."""
    seed, group_id = state["seed"], stable_id(run_id, seed_id)
    max_similarity = context.pool.max_similarity
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for round_, error in sorted(state.get("propose_errors", {}).items()):
        sample_id = stable_id(run_id, seed_id, f"r{round_}")
        sample_ids[f"r{round_}"] = sample_id
        samples.append(SampleRow(sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id,
                                 kind=CANDIDATE_KIND, status="error", reason=error,
                                 payload={"round": round_, "seed_instruction": seed.instruction}))
    for candidate in sorted(state["candidates"], key=lambda c: (c.round, int(c.key.split("c")[1]))):
        sample_id = stable_id(run_id, seed_id, candidate.key)
        sample_ids[candidate.key] = sample_id
        status, reason = candidate_verdict(candidate, context.critic_threshold, max_similarity)
        judgement = candidate.judgement
        samples.append(SampleRow(
            sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id,
            kind=KEPT_KIND if candidate.kept else CANDIDATE_KIND, status=status, reason=reason,
            score=judgement.score if judgement else None,
            payload={"instruction": candidate.instruction, "round": candidate.round, "candidate": candidate.key,
                     "seed_instruction": seed.instruction, "similarity": candidate.similarity,
                     "nearest": candidate.nearest, "max_similarity": max_similarity,
                     "answerable": judgement.answerable if judgement else None}))
        messages.append(MessageRow(sample_id=sample_id, turn=0, role="user", content=candidate.instruction))
        if candidate.response is not None:
            messages.append(MessageRow(sample_id=sample_id, turn=1, role="assistant", content=candidate.response))
        if candidate.problem is not None:
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="well_formed", outcome="failed",
                                       detail=candidate.problem))
            continue
        verdicts.append(VerdictRow(sample_id=sample_id, verifier="novelty", outcome="passed" if candidate.kept
                                   else "failed", score=candidate.similarity,
                                   detail=f"ROUGE-L {candidate.similarity:g} with {candidate.nearest!r}"))
        if judgement is not None:
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="answerable",
                                       outcome="passed" if judgement.answerable else "failed", detail=judgement.reason))
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="critic", score=judgement.score,
                                       outcome="passed" if judgement.score >= context.critic_threshold else "failed",
                                       detail=judgement.reason))
        elif candidate.judge_error is not None:
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="critic", outcome="unchecked",
                                       detail=candidate.judge_error))
    return Rows(samples, messages, verdicts, sample_ids)


FAMILY = Family(
    name="self_instruct", recipe=SelfInstructRecipe, build=build, make_context=make_context,
    initial_state=initial_state, to_rows=to_rows,
    prompts=("self_instruct_propose", "self_instruct_respond", "self_instruct_judge"),
    prompt_text=self_instruct_roles.PROMPT_TEXT, studio_recipe="demos/self_instruct.yaml",
    config={"recursion_limit": 200}, store_reads=store_reads,
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
