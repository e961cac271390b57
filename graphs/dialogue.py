"""Simulated dialogues: plan -> user -> assistant -> critic -> (redraft) -> user ... -> judge -> verify -> accept.

The user-simulator loop of UltraChat / SODA-style dialogue synthesis, with a critic on every assistant turn. The
planner draws a cell of the recipe's persona x goal x twist grid from the seed (no dice: coverage is planned),
the user simulator plays that persona in pursuit of the goal and says, in structured output, when it is done,
within the recipe's turn budget; on its second turn it changes its mind or makes a mistake when the cell says so.
The critic scores every assistant turn, and a turn under the threshold is drafted again with the critique shown,
a bounded number of times, keeping the better-scored draft. The finished dialogue gets a whole-dialogue verdict
from the critic and the computable checks (alternation, empty, duplicate and repeated turns, length, leaked
system prompt or persona sheet); it is accepted when both pass and every assistant turn met the threshold.
Each dialogue is one sample: one `messages` row per turn, one `turn_critic` verdict per assistant turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgraph.agents.dialogue_roles import (Assistant, DialogueCritic, DialogueCritique, Line, Scenario,
                                              TurnCritique, TurnRevision, Twist, UserSimulator, UserStatus)
from synthgraph.agents import dialogue_roles
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import CriticSettings, RecipeBase, RoleSettings, SeedBase
from synthgraph.graphs.rows import critic_row, sample_row, unjudged_row
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, VerdictRow, stable_id
from synthgraph.tools.dialogue_checks import CheckResult, check_dialogue

# ------------------------------------------------------------------------------------------------ recipe


class DialogueUserSettings(RoleSettings):
    temperature: float = Field(0.9, ge=0, le=2)
    max_tokens: int = Field(192, ge=1, le=32768, description="per user turn (a JSON message + status)")


class DialogueAssistantSettings(RoleSettings):
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(384, ge=1, le=32768, description="per assistant turn")
    system_prompt: str = Field("You are a helpful, accurate assistant. Answer clearly and concisely.",
                               description="the assistant's system prompt: turn 0 of every dialogue; '' for none")


class DialogueCriticSettings(CriticSettings):
    threshold: float = Field(6, ge=0, le=10, description="mean critic score (0-10) an assistant turn needs")
    dialogue_threshold: float = Field(6, ge=0, le=10, description="whole-dialogue critic score a dialogue needs")
    regenerations: int = Field(1, ge=0, le=3, description="re-drafts of an assistant turn scored under threshold")


class DialogueRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: DialogueUserSettings = Field(default_factory=DialogueUserSettings)
    assistant: DialogueAssistantSettings = Field(default_factory=DialogueAssistantSettings)
    critic: DialogueCriticSettings = Field(default_factory=DialogueCriticSettings)


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="short label, what SQL groups by")
    description: str = Field(min_length=1, max_length=2000, description="the persona sheet the user simulator plays")


class TurnLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_user: int = Field(3, ge=1, le=20, description="user turns before the user simulator may end the dialogue")
    max_user: int = Field(5, ge=1, le=20, description="user turns after which the dialogue ends (turn_budget)")

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.min_user > self.max_user:
            raise ValueError(f"min_user ({self.min_user}) must not exceed max_user ({self.max_user})")
        return self


class DialogueChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_turn_chars: int = Field(4000, ge=20, le=100000, description="longest allowed turn, user or assistant")
    near_duplicate: float = Field(0.9, gt=0, le=1, description="difflib ratio at which two assistant turns repeat")
    leak_chars: int = Field(60, ge=10, le=2000, description="verbatim overlap with the system prompt or persona "
                                                             "sheet that counts as a leak")


class DialogueSeed(SeedBase):
    """A dialogue seed: a `cell` of the recipe's persona x goal x twist grid (its position in the seed list when
    absent), and any of `persona` (a recipe persona's name), `goal`, `twist` pinned to override the grid."""

    cell: int | None = Field(None, ge=0)
    persona: str | None = None
    goal: str | None = Field(None, min_length=1)
    twist: Twist | None = None

    def again(self, round: int, stride: int) -> SeedBase:
        seed = super().again(round, stride)
        return seed if self.cell is None else seed.model_copy(update={"cell": self.cell + (round - 1) * stride})


class DialogueRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = DialogueSeed

    graph: Literal["dialogue"]
    roles: DialogueRoles = Field(default_factory=DialogueRoles)
    personas: list[Persona] = Field(min_length=1, description="the user simulator's personas")
    goals: list[str] = Field(min_length=1, description="what the user wants from the conversation")
    twists: list[Twist] = Field(["none", "changes_mind", "makes_mistake"],
                                description="what the user does on their second turn besides pursuing the goal")
    turns: TurnLimits = Field(default_factory=TurnLimits)
    verifier: DialogueChecks = Field(default_factory=DialogueChecks)

    @model_validator(mode="after")
    def _grid(self):
        names = [p.name for p in self.personas]
        if len(set(names)) != len(names):
            raise ValueError(f"personas: names must be unique (got {names})")
        if not self.twists or len(set(self.twists)) != len(self.twists):
            raise ValueError("twists: list each of none, changes_mind, makes_mistake at most once, at least one")
        if set(self.twists) - {"none"} and self.turns.max_user < 2:
            raise ValueError("twists other than none happen on the user's second turn: "
                             "set turns.max_user >= 2 or twists: [none]")
        return self

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        known = {p.name for p in self.personas}
        for position, seed in enumerate(seeds):
            if seed.persona is not None and seed.persona not in known:
                raise ValueError(f"seed {seed.seed_id}: persona {seed.persona!r} is not one of the recipe's "
                                 f"personas ({', '.join(sorted(known))})")
            if seed.cell is None:
                # Coverage is planned: a seed without a cell takes the one at its position in the seed list.
                seed.cell = position



EndReason = Literal["goal_met", "gave_up", "turn_budget"]
SUBJECT = "dialogue"  # every model call of a seed goes into its one sample
TWIST_TURN = 2  # the twist needs an answer on the table to change its mind about or to get wrong


class Draft(BaseModel):
    """One draft of an assistant turn and what the critic made of it."""

    content: str | None = None
    error: str | None = None              # the assistant's output was refused on every try
    critique: TurnCritique | None = None
    critique_error: str | None = None

    @property
    def score(self) -> float | None:
        return self.critique.score if self.critique is not None else None


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    status: UserStatus | None = None      # user turns: what the simulator said it wanted next
    drafts: list[Draft] = []              # assistant turns: every draft, in order
    kept: int | None = None               # assistant turns: the draft that became the turn


class EarlyStop(BaseModel):
    """The user simulator said it was done before the minimum; the dialogue went on with its message as a turn."""

    user_turn: int
    status: UserStatus


class DialogueState(TypedDict, total=False):
    seed: DialogueSeed
    scenario: Scenario
    turns: list[Turn]                     # committed, user first, alternating
    drafts: list[Draft]                   # the assistant turn under review
    early_stops: list[EarlyStop]
    closing: str | None                   # the message with which the user ended the dialogue: not a turn
    end_reason: EndReason | None
    verdict: DialogueCritique | None
    verdict_error: str | None
    checks: list[CheckResult]
    error: str | None                     # a role gave no usable output: the dialogue is an error sample
    outcome: Literal["accepted", "rejected"]


@dataclass
class DialogueContext:
    """The graph's run-scoped dependencies: tests pass fakes, the CLI passes real models."""

    user: UserSimulator
    assistant: Assistant
    critic: DialogueCritic
    personas: list[Persona]
    goals: list[str]
    twists: list[Twist]
    system_prompt: str = ""
    min_user_turns: int = 3
    max_user_turns: int = 5
    turn_threshold: float = 6
    dialogue_threshold: float = 6
    regenerations: int = 1
    checks: DialogueChecks = field(default_factory=DialogueChecks)


def lines(turns: list[Turn]) -> list[Line]:
    return [(t.role, t.content) for t in turns]


def user_turns(turns: list[Turn]) -> int:
    return sum(t.role == "user" for t in turns)


# ------------------------------------------------------------------------------------------------ nodes


def grid_cell(cell: int, sizes: tuple[int, int, int]) -> tuple[int, int, int]:
    """(persona, goal, twist) indices of cell `cell`. The walk is diagonal, each axis offset by the faster ones, so
    a short run already spans personas, goals and twists; every P*G*T consecutive cells hold each combination once."""
    personas, goals, twists = sizes
    i = cell % (personas * goals * twists)
    p, g, t = i % personas, (i // personas) % goals, (i // (personas * goals)) % twists
    return p, (g + p) % goals, (t + g + p) % twists


def plan(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict:
    seed, ctx = state["seed"], runtime.context
    p, g, t = grid_cell(seed.cell or 0, (len(ctx.personas), len(ctx.goals), len(ctx.twists)))
    persona = next((x for x in ctx.personas if x.name == seed.persona), ctx.personas[p])
    twist = seed.twist or ctx.twists[t]
    scenario = Scenario(cell=seed.cell or 0, persona=persona.name, persona_sheet=persona.description,
                        goal=seed.goal or ctx.goals[g], twist=twist,
                        twist_turn=None if twist == "none" else TWIST_TURN)
    return {"scenario": scenario, "turns": [], "drafts": [], "early_stops": []}


async def simulate_user(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict:
    ctx, scenario, turns = runtime.context, state["scenario"], state["turns"]
    number = user_turns(turns) + 1
    # The user may end only with the minimum in and its twist played out.
    may_end = number > ctx.min_user_turns and number > (scenario.twist_turn or 0)
    try:
        reply = await ctx.user.next_turn(scenario, lines(turns), turn=number, may_end=may_end, subject=SUBJECT)
    except ModelOutputError as exc:
        return {"error": str(exc)}
    if reply.status != "continue" and may_end:
        return {"closing": reply.message, "end_reason": reply.status}
    update = {"turns": [*turns, Turn(role="user", content=reply.message, status=reply.status)]}
    if reply.status != "continue":
        update["early_stops"] = [*state["early_stops"], EarlyStop(user_turn=number, status=reply.status)]
    return update


def route_after_user(state: DialogueState) -> Literal["respond", "judge_dialogue", "reject"]:
    if state.get("error"):
        return "reject"
    return "judge_dialogue" if state.get("end_reason") else "respond"


async def respond(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict:
    ctx, drafts = runtime.context, state["drafts"]
    revision = TurnRevision(draft=drafts[-1].content, critique=drafts[-1].critique.reason) if drafts else None
    try:
        content = await ctx.assistant.reply(ctx.system_prompt, lines(state["turns"]), revision=revision,
                                            subject=SUBJECT)
    except ModelOutputError as exc:
        if not drafts:
            return {"error": str(exc)}
        return {"drafts": [*drafts, Draft(error=str(exc))]}  # the earlier draft still stands
    return {"drafts": [*drafts, Draft(content=content)]}


def route_after_respond(state: DialogueState) -> Literal["critique", "commit", "reject"]:
    if state.get("error"):
        return "reject"
    return "commit" if state["drafts"][-1].content is None else "critique"


async def critique(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict:
    ctx, turns, drafts = runtime.context, state["turns"], state["drafts"]
    draft = drafts[-1]
    try:
        verdict = await ctx.critic.judge_turn(state["scenario"], lines(turns), draft.content,
                                              user_turn=user_turns(turns), subject=SUBJECT)
        draft = draft.model_copy(update={"critique": verdict})
    except ModelOutputError as exc:
        draft = draft.model_copy(update={"critique_error": str(exc)})
    return {"drafts": [*drafts[:-1], draft]}


def route_after_critique(state: DialogueState, runtime: Runtime[DialogueContext]) -> Literal["respond", "commit"]:
    ctx, drafts = runtime.context, state["drafts"]
    score = drafts[-1].score
    low = score is not None and not turn_passed(score, ctx.turn_threshold)
    return "respond" if low and len(drafts) - 1 < ctx.regenerations else "commit"


def kept_draft(drafts: list[Draft]) -> int:
    """The best-scored draft; on a tie, or with no scores, the earliest."""
    usable = [i for i, d in enumerate(drafts) if d.content is not None]
    return max(usable, key=lambda i: (drafts[i].score if drafts[i].score is not None else -1, -i))


def commit(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict:
    drafts, turns = state["drafts"], state["turns"]
    kept = kept_draft(drafts)
    update = {"turns": [*turns, Turn(role="assistant", content=drafts[kept].content, drafts=drafts, kept=kept)],
              "drafts": []}
    if user_turns(turns) >= runtime.context.max_user_turns:
        update["end_reason"] = "turn_budget"
    return update


def route_after_commit(state: DialogueState) -> Literal["simulate_user", "judge_dialogue"]:
    return "judge_dialogue" if state.get("end_reason") else "simulate_user"


async def judge_dialogue(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict:
    try:
        verdict = await runtime.context.critic.judge_dialogue(state["scenario"], lines(state["turns"]),
                                                              subject=SUBJECT)
    except ModelOutputError as exc:
        return {"verdict": None, "verdict_error": str(exc)}
    return {"verdict": verdict}


def verify(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict:
    ctx = runtime.context
    return {"checks": check_dialogue(stored_messages(state, ctx.system_prompt), system_prompt=ctx.system_prompt,
                                     persona_sheet=state["scenario"].persona_sheet,
                                     **ctx.checks.model_dump())}


def turn_passed(score: float, threshold: float) -> bool:
    """The accept rule of an assistant turn, the one place it is written (redrafting, rows and status read it)."""
    return score >= threshold


def dialogue_passed(verdict: DialogueCritique, threshold: float) -> bool:
    """The accept rule of the whole-dialogue critic, the one place it is written."""
    return not verdict.repetition and verdict.score >= threshold


def rejection(state: DialogueState, ctx: DialogueContext) -> str | None:
    """Why a finished dialogue is not training data, or None when it is."""
    failed = [c for c in state.get("checks", []) if not c.passed]
    if failed:
        return "failed checks: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
    verdict = state.get("verdict")
    if verdict is None:
        return f"dialogue critic gave no usable verdict: {state.get('verdict_error')}"
    if verdict.repetition:
        return f"dialogue critic found a repetition loop: {verdict.reason}"
    if not dialogue_passed(verdict, ctx.dialogue_threshold):
        return f"dialogue critic score {verdict.score} < {ctx.dialogue_threshold:g}: {verdict.reason}"
    offset = 1 if ctx.system_prompt else 0
    for i, turn in enumerate(state["turns"]):
        if turn.role != "assistant":
            continue
        score = turn.drafts[turn.kept].score
        if score is None:
            return f"assistant turn {i + offset} was not judged: {turn.drafts[turn.kept].critique_error}"
        if not turn_passed(score, ctx.turn_threshold):
            return f"assistant turn {i + offset} scored {score:g} < {ctx.turn_threshold:g}"
    return None


def route_after_verify(state: DialogueState, runtime: Runtime[DialogueContext]) -> Literal["accept", "reject"]:
    return "reject" if rejection(state, runtime.context) else "accept"


def accept(state: DialogueState) -> dict:
    return {"outcome": "accepted"}


def reject(state: DialogueState) -> dict:
    return {"outcome": "rejected"}


# Steps of the longest dialogue a recipe allows (20 user turns, 3 redrafts each: 10 steps a turn), with room.
STEP_LIMIT = 20 * 10 + 20


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(DialogueState, context_schema=DialogueContext)
    g.add_node(plan)
    g.add_node(simulate_user, retry_policy=model_retry)
    g.add_node(respond, retry_policy=model_retry)
    g.add_node(critique, retry_policy=model_retry)
    g.add_node(commit)
    g.add_node(judge_dialogue, retry_policy=model_retry)
    g.add_node(verify)
    g.add_node(accept)
    g.add_node(reject)
    g.add_edge(START, "plan")
    g.add_edge("plan", "simulate_user")
    g.add_conditional_edges("simulate_user", on_loop(route_after_user), ["respond", "judge_dialogue", "reject"])
    g.add_conditional_edges("respond", on_loop(route_after_respond), ["critique", "commit", "reject"])
    g.add_conditional_edges("critique", on_loop(route_after_critique), ["respond", "commit"])
    g.add_conditional_edges("commit", on_loop(route_after_commit), ["simulate_user", "judge_dialogue"])
    g.add_edge("judge_dialogue", "verify")
    g.add_conditional_edges("verify", on_loop(route_after_verify), ["accept", "reject"])
    g.add_edge("accept", END)
    g.add_edge("reject", END)
    return g



# --------------------------------------------------------------------------- the runner's interface


def make_context(recipe: DialogueRecipe, pool: ModelPool, store: Store | None = None) -> DialogueContext:
    prompts = FAMILY.prompt_set(recipe)
    roles = recipe.roles
    return DialogueContext(
        user=UserSimulator(pool.client(recipe.role_model("user")), roles.user.sampling(), prompts=prompts),
        assistant=Assistant(pool.client(recipe.role_model("assistant")), roles.assistant.sampling(), prompts=prompts),
        critic=DialogueCritic(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
        personas=recipe.personas,
        goals=recipe.goals,
        twists=recipe.twists,
        system_prompt=roles.assistant.system_prompt.strip(),
        min_user_turns=recipe.turns.min_user,
        max_user_turns=recipe.turns.max_user,
        turn_threshold=roles.critic.threshold,
        dialogue_threshold=roles.critic.dialogue_threshold,
        regenerations=roles.critic.regenerations,
        checks=recipe.verifier,
    )


def initial_state(seed: DialogueSeed) -> DialogueState:
    return {"seed": seed}


# ------------------------------------------------------------------------------------- state -> rows


def stored_messages(state: DialogueState, system_prompt: str) -> list[tuple[str, str]]:
    """The dialogue as its `messages` rows: the assistant's system prompt as turn 0 if it has one, then the turns."""
    head = [("system", system_prompt)] if system_prompt else []
    return head + lines(state.get("turns") or [])


def to_rows(state: DialogueState, *, run_id: str, seed_id: str, context: DialogueContext
            ) -> Rows:
    """The one sample of a dialogue, its turns and verdicts, plus call subject -> sample id."""
    sample_id = stable_id(run_id, seed_id, SUBJECT)
    turns = state.get("turns") or []
    offset = 1 if context.system_prompt else 0
    messages = [MessageRow(sample_id=sample_id, turn=i, role=role, content=content)
                for i, (role, content) in enumerate(stored_messages(state, context.system_prompt))]
    verdicts, turn_scores = [], []
    for i, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        kept = turn.drafts[turn.kept]
        turn_scores.append({"turn": i + offset, "scores": [d.score for d in turn.drafts], "kept": turn.kept})
        if kept.critique is not None:
            verdicts.append(critic_row(sample_id, verifier="turn_critic", turn=i + offset, score=kept.score,
                                       passed=turn_passed(kept.score, context.turn_threshold),
                                       detail=kept.critique.model_dump_json()))
        else:
            verdicts.append(unjudged_row(sample_id, kept.critique_error or "", verifier="turn_critic", turn=i + offset))
    verdict = state.get("verdict")
    if verdict is not None:
        verdicts.append(critic_row(sample_id, verifier="dialogue_critic", score=verdict.score,
                                   passed=dialogue_passed(verdict, context.dialogue_threshold),
                                   detail=verdict.model_dump_json()))
    elif state.get("verdict_error"):
        verdicts.append(unjudged_row(sample_id, state["verdict_error"], verifier="dialogue_critic"))
    checks = state.get("checks") or []
    if checks:
        failed = [c for c in checks if not c.passed]
        verdicts.append(VerdictRow(
            sample_id=sample_id, verifier="checks", outcome="failed" if failed else "passed",
            score=1 - len(failed) / len(checks),
            detail="; ".join(f"{c.name}: {c.detail}" for c in failed) or f"all {len(checks)} checks passed"))

    if state.get("error"):
        status, reason = "error", state["error"]
    else:
        reason = rejection(state, context)
        status = "rejected" if reason else "accepted"
    scored = [t.drafts[t.kept].score for t in turns if t.role == "assistant" and t.drafts[t.kept].score is not None]
    scenario = state.get("scenario")
    payload = {
        **({} if scenario is None else scenario.model_dump()),
        "end_reason": state.get("end_reason"),
        "user_turns": user_turns(turns),
        "assistant_turns": len(turns) - user_turns(turns),
        "regenerations": sum(len(t.drafts) - 1 for t in turns if t.role == "assistant"),
        "turn_scores": turn_scores,
        "early_stops": [e.model_dump() for e in state.get("early_stops") or []],
        "closing": state.get("closing"),
        "dialogue_verdict": verdict.model_dump() if verdict is not None else None,
        "checks": [c.model_dump() for c in checks],
    }
    sample = sample_row(run_id, seed_id, SUBJECT, kind="dialogue", status=status, reason=reason,
                        score=round(sum(scored) / len(scored), 3) if scored else None, payload=payload)
    return Rows([sample], messages, verdicts, {SUBJECT: sample_id})


def prompts_unused(recipe: DialogueRecipe) -> dict[str, str]:
    return {"dialogue_revise": "roles.critic.regenerations: 0"} if recipe.roles.critic.regenerations == 0 else {}


FAMILY = Family(
    name="dialogue", recipe=DialogueRecipe, build=build, make_context=make_context, initial_state=initial_state,
    to_rows=to_rows,
    prompts=("dialogue_user", "dialogue_revise", "dialogue_critic", "dialogue_judge"), prompts_unused=prompts_unused,
    prompt_text=dialogue_roles.PROMPT_TEXT, studio_recipe="demos/dialogue.yaml",
    config={"recursion_limit": STEP_LIMIT},
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
