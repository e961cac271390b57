"""The Self-Instruct roles: a proposer that writes new instructions from examples of the pool, a solver that
answers one, a critic that says whether it can be answered and how well it was. Prompt + call + parsing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts

EXAMPLE_LINE = "Task {number}: {instruction}"
PROMPT_TEXT = {"example_line": EXAMPLE_LINE}


class InstructionBatch(BaseModel):
    instructions: list[str] = Field(min_length=1)


class InstructionJudgement(BaseModel):
    reason: str = Field(max_length=500)
    answerable: bool
    score: int = Field(ge=0, le=10)


CHARS_PER_WORD = 8  # generous for English (about 6 with the space): the grammar's bound never cuts below the word limit


def batch_grammar(count: int, max_words: int) -> dict:
    """At most `count` instructions, each a non-empty line of bounded length: long enough for `max_words` words
    (600 characters at least), which the word check then holds them to; the bound only stops a runaway string."""
    return {"type": "object", "properties": {"instructions": {
        "type": "array", "minItems": 1, "maxItems": count,
        "items": {"type": "string", "minLength": 10, "maxLength": max(600, CHARS_PER_WORD * max_words)}}},
        "required": ["instructions"], "additionalProperties": False}


def _not_empty(text: str) -> str | None:
    return None if text.strip() else "empty response"


@dataclass
class InstructionWriter:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS
    max_words: int = 150

    async def write(self, examples: Sequence[str], *, count: int, subject: str) -> list[str]:
        listed = "\n".join(EXAMPLE_LINE.format(number=i, instruction=e) for i, e in enumerate(examples, 1))
        completion = await self.client.complete(
            self.prompts.render("self_instruct_propose", examples=listed, count=str(count),
                                next_number=str(len(examples) + 1)),
            role="proposer", sampling=self.sampling, schema=InstructionBatch,
            json_schema=batch_grammar(count, self.max_words), subject=subject)
        return [" ".join(text.split()) for text in completion.parsed.instructions]


@dataclass
class Responder:
    """Answers an instruction as it stands; Evol-Instruct uses it too, with its own template."""

    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS
    template: str = "self_instruct_respond"

    async def respond(self, instruction: str, *, subject: str) -> str:
        completion = await self.client.complete(
            self.prompts.render(self.template, instruction=instruction),
            role="solver", sampling=self.sampling, check=_not_empty, subject=subject)
        return completion.text.strip()


@dataclass
class Critic:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def judge(self, *, instruction: str, response: str, subject: str) -> InstructionJudgement:
        completion = await self.client.complete(
            self.prompts.render("self_instruct_judge", instruction=instruction, response=response),
            role="critic", sampling=self.sampling, schema=InstructionJudgement, subject=subject)
        return completion.parsed
