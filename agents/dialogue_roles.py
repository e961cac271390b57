"""The dialogue recipe's roles: user simulator, assistant, critic (the computable checks are tools/dialogue_checks.py).

Prompt + call + parsing; no graph logic here. The assistant is plain chat: tool calls in dialogues are left to the
tool registry (tools/registry.py) once a recipe wants them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, Field

from synthgraph.agents.models import ModelClient, Sampling, system_message
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts
from synthgraph.tools.dialogue_checks import longest_overlap, normalized

Twist = Literal["none", "changes_mind", "makes_mistake"]
UserStatus = Literal["continue", "goal_met", "gave_up"]
Line = tuple[Literal["user", "assistant"], str]  # one turn of the conversation so far


class Scenario(BaseModel):
    """One planned cell of the recipe's grid: who the user is, what they want, and what they do on `twist_turn`."""

    cell: int
    persona: str
    persona_sheet: str
    goal: str
    twist: Twist
    twist_turn: int | None               # the user turn (1-based) the twist happens on; None for no twist


TWIST_INSTRUCTIONS = {
    "changes_mind": "In this message, change your mind about one part of what you want (a preference, a limit or a "
                    "detail) and tell the assistant.",
    "makes_mistake": "In this message, state something wrong with confidence (a wrong fact, number or assumption "
                     "about your topic), as real people sometimes do. Do not say that it is wrong.",
}


USER_INSTRUCTIONS = {
    "first": "Write your first message to the assistant: ask for what you want in your own words, without "
             "describing yourself.",
    "next": "Write your next message: react to the assistant's last reply and pursue what you want (ask a "
            "follow-up, push back, or ask for a detail).",
    "may_end": "Set status to goal_met if you now have what you wanted, gave_up if the assistant keeps failing you, "
               "otherwise continue.",
    "goes_on": "The conversation goes on: status is continue.",
}
TRANSCRIPT_BLOCK = "The conversation so far:\n{transcript}\n\n"
MISTAKE_NOTE = "Note: the user's last message may contain a mistake; a good reply points it out politely.\n"
JUDGE_NOTES = {"changes_mind": "The user was asked to change their mind once; following the change is right.\n",
               "makes_mistake": "The user was asked to make one mistake; the assistant should have caught it.\n"}
# Prompt text filled in beside the templates: part of the run id like the templates.
PROMPT_TEXT = {"twists": TWIST_INSTRUCTIONS, "user_instructions": USER_INSTRUCTIONS, "transcript_block": TRANSCRIPT_BLOCK,
               "mistake_note": MISTAKE_NOTE, "judge_notes": JUDGE_NOTES}


def transcript(history: Sequence[Line]) -> str:
    return "\n\n".join(f"{'User' if role == 'user' else 'Assistant'}: {text}" for role, text in history)


# ------------------------------------------------------------------------------------------ user simulator


class UserTurn(BaseModel):
    message: str = Field(min_length=1, max_length=2000)
    status: UserStatus


def _continue_only() -> dict:
    """UserTurn's schema with `status` held to "continue": below the minimum, the grammar cannot end the dialogue."""
    schema = UserTurn.model_json_schema()
    schema["properties"]["status"] = {"const": "continue", "title": "Status", "type": "string"}
    return schema


CONTINUE_ONLY = _continue_only()


@dataclass
class UserSimulator:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def next_turn(self, scenario: Scenario, history: Sequence[Line], *, turn: int, may_end: bool,
                        subject: str | None = None) -> UserTurn:
        """The user's `turn`-th message (1-based) and whether they are done; `may_end` False forces "continue"."""
        if not history:
            instruction = USER_INSTRUCTIONS["first"]
        else:
            instruction = USER_INSTRUCTIONS["next"] + " " + USER_INSTRUCTIONS["may_end" if may_end else "goes_on"]
        twist = TWIST_INSTRUCTIONS.get(scenario.twist) if turn == scenario.twist_turn else None

        def in_character(text: str) -> str | None:
            message = _plain(UserTurn.model_validate_json(text).message)
            return user_message_problem(message, history, persona_sheet=scenario.persona_sheet)

        completion = await self.client.complete(
            self.prompts.render("dialogue_user", persona=scenario.persona_sheet, goal=scenario.goal,
                   transcript_block=TRANSCRIPT_BLOCK.format(transcript=transcript(history)) if history else "",
                   instruction=instruction, twist_block=f"\n{twist}" if twist else "",
                   statuses="continue | goal_met | gave_up" if may_end else "continue"),
            role="user",
            sampling=self.sampling,
            schema=UserTurn,
            json_schema=None if may_end else CONTINUE_ONLY,
            check=in_character,
            subject=subject,
        )
        return completion.parsed.model_copy(update={"message": _plain(completion.parsed.message)})


# Small models continue the transcript's "User: ..." layout inside the JSON string.
_SPEAKER_PREFIX = re.compile(r"^\s*(?:User\s*)?[:,;]\s*", re.I)
# ... or slip into the assistant's role: what a user would not type.
_ASSISTANT_VOICE = re.compile(r"\b(how (can|may) I (help|assist) you|I'?m here to help you|as an AI\b)", re.I)


def _plain(message: str) -> str:
    return _SPEAKER_PREFIX.sub("", message).strip()


def user_message_problem(message: str, history: Sequence[Line], *, persona_sheet: str) -> str | None:
    """Why a simulated user message is not one a user would write here, or None."""
    if not message:
        return "empty message"
    if _ASSISTANT_VOICE.search(message):
        return "speaks as the assistant, not the user"
    if len(longest_overlap(message, persona_sheet)) >= min(ECHO_CHARS, len(normalized(persona_sheet))):
        return "recites the persona sheet instead of speaking as the person"
    return _echo(message, history)


ECHO = 0.8          # difflib ratio at which a new turn merely repeats an earlier one
ECHO_CHARS = 50     # verbatim characters of a persona sheet that make a message a recital of it


def _echo(text: str, history: Sequence[Line]) -> str | None:
    normal = normalized(text)
    for role, earlier in history:
        if difflib.SequenceMatcher(None, normal, normalized(earlier), autojunk=False).ratio() >= ECHO:
            return f"echoes an earlier {role} turn instead of writing a new message"
    return None


# ---------------------------------------------------------------------------------------------- assistant

_SPEAKS_FOR_USER = re.compile(r"^\s*(User|Human)\s*:", re.M)


def reply_problem(text: str, history: Sequence[Line]) -> str | None:
    """Why an assistant reply is not one to keep drafting from, or None. Small models parrot the user's message
    or their own last answer; refusing that here turns it into a retry instead of a rejected dialogue."""
    if _SPEAKS_FOR_USER.search(text):
        return "writes the user's side of the conversation too"
    return _echo(text, history)


@dataclass
class TurnRevision:
    """A draft the critic scored low, and what it said: shown to the assistant when it drafts again."""

    draft: str
    critique: str


@dataclass
class Assistant:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def reply(self, system_prompt: str, history: Sequence[Line], *, revision: TurnRevision | None = None,
                    subject: str | None = None) -> str:
        messages: list[BaseMessage] = [HumanMessage(content=text) if role == "user" else AIMessage(content=text)
                                       for role, text in history]
        system = system_prompt
        if revision is not None:
            # The note rides on the prompt only: the stored dialogue keeps the user's own words.
            note_system, note_user = self.prompts.template("dialogue_revise")
            system = f"{system_prompt}\n\n{note_system}".strip()
            messages[-1] = HumanMessage(content=f"{messages[-1].content}\n\n"
                                                f"{note_user.format(draft=revision.draft, critique=revision.critique)}")
        if system:
            messages.insert(0, system_message(system))
        completion = await self.client.complete(messages, role="assistant", sampling=self.sampling,
                                                check=lambda text: reply_problem(text, history), subject=subject)
        return completion.text.strip()


# ------------------------------------------------------------------------------------------------- critic


class TurnCritique(BaseModel):
    reason: str = Field(max_length=600)
    helpfulness: int = Field(ge=0, le=10)
    correctness: int = Field(ge=0, le=10)
    consistency: int = Field(ge=0, le=10)
    on_goal: int = Field(ge=0, le=10)

    @property
    def score(self) -> float:
        return (self.helpfulness + self.correctness + self.consistency + self.on_goal) / 4


class DialogueCritique(BaseModel):
    reason: str = Field(max_length=600)
    goal_met: bool
    persona_adherence: int = Field(ge=0, le=10)
    repetition: bool
    score: int = Field(ge=0, le=10)




@dataclass
class DialogueCritic:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def judge_turn(self, scenario: Scenario, history: Sequence[Line], reply: str, *, user_turn: int,
                         subject: str | None = None) -> TurnCritique:
        """Score `reply`, the assistant's answer to the last line of `history` (the user's `user_turn`-th)."""
        mistake = scenario.twist == "makes_mistake" and user_turn == scenario.twist_turn
        completion = await self.client.complete(
            self.prompts.render("dialogue_critic", goal=scenario.goal, note_block=MISTAKE_NOTE if mistake else "",
                   transcript=transcript(history), reply=reply),
            role="critic", sampling=self.sampling, schema=TurnCritique, subject=subject,
        )
        return completion.parsed

    async def judge_dialogue(self, scenario: Scenario, history: Sequence[Line], *,
                             subject: str | None = None) -> DialogueCritique:
        completion = await self.client.complete(
            self.prompts.render("dialogue_judge", persona=scenario.persona_sheet, goal=scenario.goal,
                   note_block=JUDGE_NOTES.get(scenario.twist, ""), transcript=transcript(history)),
            role="critic", sampling=self.sampling, schema=DialogueCritique, subject=subject,
        )
        return completion.parsed
