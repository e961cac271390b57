"""Critique and revision (Constitutional AI): respond -> critique against principles -> revise -> judge both -> pair.

A first response to an instruction is critiqued against principles drawn from the recipe's list (CAI draws a
few per example), the responder rewrites it with that critique, and a judge rates the original and the revision on
the judged-pairs rubric. When the revision is rated at least `pairs.min_margin` above the original (and reaches
`pairs.min_score`, failing no aspect), it is accepted and the original rejected: the store's `preference_pairs` view
makes the pair (revision chosen, original rejected). Otherwise the original stays the answer (if it fails no aspect
itself) and there is no pair.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgraph.agents import critique_revise_roles, judged_pairs_roles
from synthgraph.agents.critique_revise_roles import DEFAULT_PRINCIPLES, Critic, Reviser
from synthgraph.agents.judged_pairs_roles import AspectRating, Judge, Responder, failed_aspects, overall
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.judged_pairs import Instruction, JudgeSettings, PairSettings, failing, rubric_rows
from synthgraph.graphs.recipe import RecipeBase, RoleSettings, SeedBase
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, SampleRow, stable_id

# ------------------------------------------------------------------------------------------------ recipe


class ResponderSettings(RoleSettings):
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=1, le=32768)


class CritiqueCriticSettings(RoleSettings):
    temperature: float = Field(0.3, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=32768)


class CritiqueRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    responder: ResponderSettings = Field(default_factory=ResponderSettings,
                                         description="writes the first response and the revision (as in CAI)")
    critic: CritiqueCriticSettings = Field(default_factory=CritiqueCriticSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)


class CritiqueSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principles: list[str] = Field(default_factory=lambda: list(DEFAULT_PRINCIPLES), min_length=1,
                                  description="the constitution: principles a critique checks the response against")
    per_critique: int = Field(2, ge=1, le=20, description="principles drawn for each critique (seeded by the seed)")

    @model_validator(mode="after")
    def _enough_principles(self):
        if self.per_critique > len(self.principles):
            raise ValueError(f"critique.per_critique ({self.per_critique}) is more than the "
                             f"{len(self.principles)} principles given")
        return self


class CritiqueReviseRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = Instruction

    graph: Literal["critique_revise"]
    roles: CritiqueRoles = Field(default_factory=CritiqueRoles)
    critique: CritiqueSettings = Field(default_factory=CritiqueSettings)
    pairs: PairSettings = Field(default_factory=PairSettings)


class Draft(BaseModel):
    text: str | None = None
    error: str | None = None              # the model's output was refused on every try
    ratings: dict[str, AspectRating] | None = None
    judge_error: str | None = None

    @property
    def score(self) -> float | None:
        return overall(self.ratings) if self.ratings else None


class RevisionState(TypedDict, total=False):
    seed: Instruction
    principles: list[str]
    original: Draft
    critique: str | None
    critique_error: str | None
    revision: Draft | None


@dataclass
class CritiqueContext:
    responder: Responder
    critic: Critic
    reviser: Reviser
    judge: Judge
    principles: tuple[str, ...] = DEFAULT_PRINCIPLES
    per_critique: int = 2
    min_margin: float = 1.0
    min_score: float = 3.0


# ------------------------------------------------------------------------------------------------ nodes


def draw_principles(seed: Instruction, principles: tuple[str, ...], k: int) -> list[str]:
    """CAI samples the principles of each critique; seeded by the seed id so a rerun draws the same ones."""
    return random.Random(seed.seed_id).sample(list(principles), k)


async def respond(state: RevisionState, runtime: Runtime[CritiqueContext]) -> dict:
    ctx, seed = runtime.context, state["seed"]
    principles = draw_principles(seed, ctx.principles, ctx.per_critique)
    try:
        text = await ctx.responder.respond(seed.instruction, system=seed.system, subject="original")
        return {"principles": principles, "original": Draft(text=text)}
    except ModelOutputError as exc:
        return {"principles": principles, "original": Draft(error=str(exc))}


def route_after_respond(state: RevisionState) -> Literal["critique", "done"]:
    return "critique" if state["original"].text is not None else "done"


async def critique(state: RevisionState, runtime: Runtime[CritiqueContext]) -> dict:
    try:
        text = await runtime.context.critic.critique(instruction=state["seed"].instruction,
                                                     response=state["original"].text, principles=state["principles"])
        return {"critique": text}
    except ModelOutputError as exc:
        return {"critique": None, "critique_error": str(exc)}


def route_after_critique(state: RevisionState) -> Literal["revise", "judge"]:
    return "revise" if state.get("critique") else "judge"  # no critique, no revision: the original is still rated


async def revise(state: RevisionState, runtime: Runtime[CritiqueContext]) -> dict:
    try:
        text = await runtime.context.reviser.revise(instruction=state["seed"].instruction,
                                                    response=state["original"].text, critique=state["critique"],
                                                    principles=state["principles"])
        return {"revision": Draft(text=text)}
    except ModelOutputError as exc:
        return {"revision": Draft(error=str(exc))}


async def judge(state: RevisionState, runtime: Runtime[CritiqueContext]) -> dict:
    seed, rater = state["seed"], runtime.context.judge
    drafts = {"original": state["original"], "revision": state.get("revision")}

    async def rate(key: str, draft: Draft) -> Draft:
        try:
            ratings = await rater.rate(instruction=seed.instruction, response=draft.text, system=seed.system,
                                       subject=key)
            return draft.model_copy(update={"ratings": ratings})
        except ModelOutputError as exc:
            return draft.model_copy(update={"judge_error": str(exc)})

    todo = {k: d for k, d in drafts.items() if d is not None and d.text is not None}
    rated = await asyncio.gather(*(rate(k, d) for k, d in todo.items()))
    return dict(zip(todo, rated))


def done(state: RevisionState) -> dict:
    return {}


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(RevisionState, context_schema=CritiqueContext)
    g.add_node(respond, retry_policy=model_retry)
    g.add_node(critique, retry_policy=model_retry)
    g.add_node(revise, retry_policy=model_retry)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(done)
    g.add_edge(START, "respond")
    g.add_conditional_edges("respond", on_loop(route_after_respond), ["critique", "done"])
    g.add_conditional_edges("critique", on_loop(route_after_critique), ["revise", "judge"])
    g.add_edge("revise", "judge")
    g.add_edge("judge", "done")
    g.add_edge("done", END)
    return g


# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: CritiqueReviseRecipe, pool: ModelPool, store: Store | None = None) -> CritiqueContext:
    prompts = FAMILY.prompt_set(recipe)
    roles = recipe.roles
    responder = pool.client(recipe.role_model("responder"))
    return CritiqueContext(
        responder=Responder(responder, roles.responder.sampling(), prompts=prompts, prompt="critique_revise_respond"),
        critic=Critic(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
        reviser=Reviser(responder, roles.responder.sampling(), prompts=prompts),
        judge=Judge(pool.client(recipe.role_model("judge")), roles.judge.sampling(),
                    aspects=tuple(roles.judge.aspects), prompts=prompts, prompt="critique_revise_judge"),
        principles=tuple(recipe.critique.principles), per_critique=recipe.critique.per_critique,
        min_margin=recipe.pairs.min_margin, min_score=recipe.pairs.min_score,
    )


def initial_state(seed: Instruction) -> RevisionState:
    return {"seed": seed}


# ------------------------------------------------------------------------------------- state -> rows


def revision_wins(original: Draft, revision: Draft | None, ctx: CritiqueContext) -> bool:
    if revision is None or revision.score is None or original.score is None:
        return False
    return (revision.score - original.score >= ctx.min_margin and revision.score >= ctx.min_score
            and not failed_aspects(revision.ratings))


def draft_verdict(key: str, draft: Draft, other: Draft | None, wins: bool, ctx: CritiqueContext
                  ) -> tuple[str, str | None]:
    """(status, reason) of the original or the revision as a sample."""
    if draft.error is not None:
        return "error", draft.error
    if draft.judge_error is not None:
        return "rejected", f"judge gave no usable rating: {draft.judge_error}"
    failed = failed_aspects(draft.ratings)
    if key == "revision":
        if wins:
            return "accepted", None
        if failed:
            return "rejected", failing(draft.score, failed)
        return "rejected", (f"rated {draft.score:g}, not {ctx.min_margin:g} above the original's {other.score:g}"
                            if other is not None and other.score is not None
                            else f"rated {draft.score:g}; the original was not rated")
    if wins:
        return "rejected", f"revised: the revision was rated {other.score:g} against {draft.score:g}"
    if failed:
        return "rejected", f"{failing(draft.score, failed)}, and no better revision"
    if draft.score < ctx.min_score:
        return "rejected", f"rated {draft.score:g} < min_score {ctx.min_score:g}, and no better revision"
    return "accepted", None


def to_rows(state: RevisionState, *, run_id: str, seed_id: str, context: CritiqueContext) -> Rows:
    """An original_response and (when written) a revised_response sample, both in the seed's group."""
    seed, group_id = state["seed"], stable_id(run_id, seed_id)
    original, revision = state["original"], state.get("revision")
    wins = revision_wins(original, revision, context)
    common = {"instruction": seed.instruction, "system": seed.system, "principles": state.get("principles"),
              "critique": state.get("critique"), "critique_error": state.get("critique_error"),
              "min_margin": context.min_margin, "min_score": context.min_score}
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for key, kind, draft, other in (("original", "original_response", original, revision),
                                    ("revision", "revised_response", revision, original)):
        if draft is None:
            continue
        sample_id = stable_id(run_id, seed_id, key)
        sample_ids[key] = sample_id
        status, reason = draft_verdict(key, draft, other, wins, context)
        samples.append(SampleRow(
            sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id, kind=kind, status=status,
            reason=reason, score=draft.score,
            payload={**common, "ratings": {a: r.model_dump() for a, r in (draft.ratings or {}).items()}}))
        turns = ([("system", seed.system)] if seed.system else []) + [("user", seed.instruction)]
        if draft.text is not None:
            turns.append(("assistant", draft.text))
        messages += [MessageRow(sample_id=sample_id, turn=i, role=role, content=content)
                     for i, (role, content) in enumerate(turns)]
        verdicts += rubric_rows(sample_id, draft.ratings, draft.judge_error)
    return Rows(samples, messages, verdicts, sample_ids)


FAMILY = Family(
    name="critique_revise", recipe=CritiqueReviseRecipe, build=build, make_context=make_context,
    initial_state=initial_state, to_rows=to_rows,
    prompts=("critique_revise_respond", "critique_revise_critique", "critique_revise_revise", "critique_revise_judge"),
    prompt_text={**critique_revise_roles.PROMPT_TEXT, **judged_pairs_roles.PROMPT_TEXT},
    studio_recipe="demos/critique_revise.yaml",
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
