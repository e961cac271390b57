"""The critique-and-revision roles (Constitutional AI's supervised stage): a critic names where a response falls
short of written principles, the responder rewrites it. The first response and the judge are the judged-pairs
roles (agents/judged_pairs_roles.py) with this family's templates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts

# Constitutional principles a recipe starts from (`critique.principles` replaces them). Part of the run id.
DEFAULT_PRINCIPLES = (
    "The response should answer exactly what was asked, completely, without padding.",
    "The response should not state anything false or invented; where it is unsure it should say so.",
    "The response should follow every instruction about format, length and style.",
    "The response should be clear to a non-expert: short sentences, terms explained.",
    "The response should not be harmful, preachy or condescending.",
)
PRINCIPLE_LINE = "{number}. {principle}"
PROMPT_TEXT = {"default_principles": DEFAULT_PRINCIPLES, "principle_line": PRINCIPLE_LINE}


def principles_block(principles: Sequence[str]) -> str:
    return "\n".join(PRINCIPLE_LINE.format(number=i, principle=p) for i, p in enumerate(principles, 1))


def _not_empty(text: str) -> str | None:
    return None if text.strip() else "empty reply"


@dataclass
class Critic:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def critique(self, *, instruction: str, response: str, principles: Sequence[str]) -> str:
        completion = await self.client.complete(
            self.prompts.render("critique_revise_critique", instruction=instruction, response=response,
                                principles=principles_block(principles)),
            role="critic", sampling=self.sampling, check=_not_empty, subject="original")
        return completion.text.strip()


@dataclass
class Reviser:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def revise(self, *, instruction: str, response: str, critique: str, principles: Sequence[str]) -> str:
        completion = await self.client.complete(
            self.prompts.render("critique_revise_revise", instruction=instruction, response=response,
                                critique=critique, principles=principles_block(principles)),
            role="solver", sampling=self.sampling, check=_not_empty, subject="revision")
        return completion.text.strip()
