"""Judged preference pairs (UltraFeedback): respond n ways -> rate each on a rubric -> rank -> best vs lower-by-margin.

Several responses to one instruction — from one or several models and temperatures (`roles.responders`) — are
each rated by a judge on UltraFeedback's aspects (helpfulness, honesty, instruction following, truthfulness,
1-5 each); a response's score is the mean. The best response of those rated 3 or more on every aspect, if it
reaches `pairs.min_score`, is accepted (it is also good SFT data); every other one is rejected with its rating. The
store's `preference_pairs` view pairs the accepted response with each rejected one at least `pairs.min_margin`
below it, so ties and near-ties never pair.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthgraph.agents import judged_pairs_roles
from synthgraph.agents.judged_pairs_roles import (ASPECT_FLOOR, ASPECTS, AspectRating, Judge, Responder,
                                                  failed_aspects, overall)
from synthgraph.agents.models import ModelOutputError, ModelPool, ModelSpec
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import RecipeBase, RoleSettings, SeedBase
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, SampleRow, VerdictRow, stable_id

# ------------------------------------------------------------------------------------------------ recipe


class ResponderSettings(RoleSettings):
    samples: int = Field(2, ge=1, le=16, description="responses from this model at this temperature")
    temperature: float = Field(0.8, ge=0, le=2)
    max_tokens: int = Field(512, ge=1, le=32768)


class JudgeSettings(RoleSettings):
    temperature: float = Field(0.0, ge=0, le=2)
    aspects: list[str] = Field(default_factory=lambda: list(ASPECTS), min_length=1,
                               description=f"rubric aspects, any of {', '.join(ASPECTS)}")
    max_tokens: int = Field(400, ge=1, le=32768)

    @field_validator("aspects")
    @classmethod
    def _known_aspects(cls, aspects: list[str]) -> list[str]:
        unknown = [a for a in aspects if a not in ASPECTS]
        if unknown:
            raise ValueError(f"unknown aspect {unknown[0]!r}; known: {', '.join(ASPECTS)}")
        if len(set(aspects)) != len(aspects):
            raise ValueError("each aspect once")
        return aspects


class JudgedRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    responders: list[ResponderSettings] = Field(
        default_factory=lambda: [ResponderSettings(samples=2, temperature=0.3), ResponderSettings(samples=2, temperature=1.1)],
        min_length=1, description="who answers: a model (default: the recipe's) and temperature, `samples` times each")
    judge: JudgeSettings = Field(default_factory=JudgeSettings)

    @property
    def total_responses(self) -> int:
        return sum(r.samples for r in self.responders)


class PairSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_margin: float = Field(1.0, gt=0, le=4, description="mean-rating gap (1-5 scale) a rejected response needs "
                                                            "below the chosen one; smaller gaps are not pairs")
    # Below the aspect floor it could not matter: a response failing no aspect is rated ASPECT_FLOOR or more.
    min_score: float = Field(3.0, ge=ASPECT_FLOOR, le=5, description="mean rating the best response needs to be chosen")


class Instruction(SeedBase):
    """A judged-pairs seed: an instruction, and optionally the system prompt the responders answer under."""

    instruction: str = Field(min_length=1)
    system: str | None = None


class JudgedPairsRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = Instruction

    graph: Literal["judged_pairs"]
    roles: JudgedRoles = Field(default_factory=JudgedRoles)
    pairs: PairSettings = Field(default_factory=PairSettings)

    def role_model(self, role: str) -> ModelSpec:
        if role.startswith("responder"):  # responder<i>: one entry of the responders list
            return ModelSpec.parse(self.roles.responders[int(role.removeprefix("responder"))].model or self.model)
        return super().role_model(role)


class Response(BaseModel):
    key: str                              # responder index and sample: "p<i>s<j>", stable across reruns
    responder: int
    text: str | None = None
    error: str | None = None              # the responder's output was refused on every try
    ratings: dict[str, AspectRating] | None = None
    judge_error: str | None = None

    @property
    def score(self) -> float | None:
        return overall(self.ratings) if self.ratings else None


class JudgedState(TypedDict, total=False):
    seed: Instruction
    responses: Annotated[list[Response], merge_by_key]
    best: str | None                      # key of the chosen response; None when none reached min_score


class RespondTask(TypedDict):
    seed: Instruction
    key: str
    responder: int


@dataclass
class JudgedContext:
    responders: list[tuple[Responder, int]]    # each responder and how many responses it writes
    judge: Judge
    min_margin: float = 1.0
    min_score: float = 3.0
    responder_labels: list[dict] = field(default_factory=list)  # model and temperature per responder, for payloads


# ------------------------------------------------------------------------------------------------ nodes


def fan_out(state: JudgedState, runtime: Runtime[JudgedContext]) -> list[Send]:
    return [Send("respond", RespondTask(seed=state["seed"], key=f"p{i}s{j}", responder=i))
            for i, (_, samples) in enumerate(runtime.context.responders) for j in range(samples)]


async def respond(task: RespondTask, runtime: Runtime[JudgedContext]) -> dict:
    responder, _ = runtime.context.responders[task["responder"]]
    response = Response(key=task["key"], responder=task["responder"])
    try:
        response.text = await responder.respond(task["seed"].instruction, system=task["seed"].system,
                                                subject=task["key"])
    except ModelOutputError as exc:
        response.error = str(exc)
    return {"responses": [response]}


async def judge(state: JudgedState, runtime: Runtime[JudgedContext]) -> dict:
    seed, rater = state["seed"], runtime.context.judge
    pending = [r for r in state["responses"] if r.text is not None and r.ratings is None and r.judge_error is None]

    async def rate(response: Response) -> Response:
        try:
            ratings = await rater.rate(instruction=seed.instruction, response=response.text, system=seed.system,
                                       subject=response.key)
            return response.model_copy(update={"ratings": ratings})
        except ModelOutputError as exc:
            return response.model_copy(update={"judge_error": str(exc)})

    return {"responses": list(await asyncio.gather(*(rate(r) for r in pending)))}


def rank(state: JudgedState, runtime: Runtime[JudgedContext]) -> dict:
    """The chosen response: the highest mean rating (the first key on a tie) among those that fail no aspect, if
    it reaches min_score."""
    rated = sorted((r for r in state["responses"] if r.score is not None and not failed_aspects(r.ratings)),
                   key=lambda r: (-r.score, r.key))
    best = rated[0] if rated and rated[0].score >= runtime.context.min_score else None
    return {"best": best.key if best else None}


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(JudgedState, context_schema=JudgedContext)
    g.add_node(respond, input_schema=RespondTask, retry_policy=model_retry)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(rank)
    g.add_conditional_edges(START, on_loop(fan_out), ["respond"])
    g.add_edge("respond", "judge")
    g.add_edge("judge", "rank")
    g.add_edge("rank", END)
    return g


# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: JudgedPairsRecipe, pool: ModelPool, store: Store | None = None) -> JudgedContext:
    prompts = FAMILY.prompt_set(recipe)
    roles = recipe.roles
    return JudgedContext(
        responders=[(Responder(pool.client(recipe.role_model(f"responder{i}")), r.sampling(), prompts=prompts), r.samples)
                    for i, r in enumerate(roles.responders)],
        judge=Judge(pool.client(recipe.role_model("judge")), roles.judge.sampling(), aspects=tuple(roles.judge.aspects),
                    prompts=prompts),
        min_margin=recipe.pairs.min_margin, min_score=recipe.pairs.min_score,
        responder_labels=[{"model": str(recipe.role_model(f"responder{i}")), "temperature": r.temperature}
                          for i, r in enumerate(roles.responders)],
    )


def initial_state(seed: Instruction) -> JudgedState:
    return {"seed": seed, "responses": []}


# ------------------------------------------------------------------------------------- state -> rows


def rubric_rows(sample_id: str, ratings: dict[str, AspectRating] | None, judge_error: str | None) -> list[VerdictRow]:
    """A judged draft's verdicts: one per aspect (rated ASPECT_FLOOR of 5 or better passes; the rating is the
    score), or the judge's failure to rate it."""
    rows = [VerdictRow(sample_id=sample_id, verifier=f"judge_{aspect}", score=rating.rating,
                       outcome="passed" if rating.rating >= ASPECT_FLOOR else "failed", detail=rating.rationale)
            for aspect, rating in (ratings or {}).items()]
    if judge_error is not None:
        rows.append(VerdictRow(sample_id=sample_id, verifier="judge", outcome="unchecked", detail=judge_error))
    return rows


def failing(score: float, failed: list[str]) -> str:
    """Why a draft that fails an aspect is not chosen, whatever its mean."""
    return f"rated {score:g}, failing {', '.join(failed)} (under {ASPECT_FLOOR})"


def response_verdict(response: Response, best: Response | None, min_score: float) -> tuple[str, str | None]:
    """(status, reason) of one response as a sample."""
    if response.error is not None:
        return "error", response.error
    if response.judge_error is not None:
        return "rejected", f"judge gave no usable rating: {response.judge_error}"
    if best is not None and response.key == best.key:
        return "accepted", None
    if failed := failed_aspects(response.ratings):
        return "rejected", failing(response.score, failed)
    if best is None:
        return "rejected", (f"rated {response.score:g}; no response reached min_score {min_score:g} failing no "
                            "aspect")
    return "rejected", f"rated {response.score:g} against the chosen {best.score:g}"


def to_rows(state: JudgedState, *, run_id: str, seed_id: str, context: JudgedContext) -> Rows:
    """One judged_response sample per response, with a verdict per aspect; the chosen one is accepted."""
    seed, group_id = state["seed"], stable_id(run_id, seed_id)
    best = next((r for r in state["responses"] if r.key == state.get("best")), None)
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for response in sorted(state["responses"], key=lambda r: r.key):
        sample_id = stable_id(run_id, seed_id, response.key)
        sample_ids[response.key] = sample_id
        status, reason = response_verdict(response, best, context.min_score)
        samples.append(SampleRow(
            sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id, kind="judged_response",
            status=status, reason=reason, score=response.score,
            payload={"instruction": seed.instruction, "system": seed.system, "response_key": response.key,
                     **(context.responder_labels[response.responder] if context.responder_labels else {}),
                     "ratings": {a: r.model_dump() for a, r in (response.ratings or {}).items()},
                     "min_margin": context.min_margin, "min_score": context.min_score}))
        turns = ([("system", seed.system)] if seed.system else []) + [("user", seed.instruction)]
        if response.text is not None:
            turns.append(("assistant", response.text))
        messages += [MessageRow(sample_id=sample_id, turn=i, role=role, content=content)
                     for i, (role, content) in enumerate(turns)]
        verdicts += rubric_rows(sample_id, response.ratings, response.judge_error)
    return Rows(samples, messages, verdicts, sample_ids)


FAMILY = Family(
    name="judged_pairs", recipe=JudgedPairsRecipe, build=build, make_context=make_context,
    initial_state=initial_state, to_rows=to_rows,
    prompts=("judged_pairs_respond", "judged_pairs_judge"),
    prompt_text=judged_pairs_roles.PROMPT_TEXT, studio_recipe="demos/judged_pairs.yaml",
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
