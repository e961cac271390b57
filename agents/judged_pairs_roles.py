"""The judged-pairs roles (UltraFeedback style): responders answer an instruction, a judge rates each response on
a rubric of aspects. Prompt + call + parsing; which response is chosen is the graph's business."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, Field, create_model

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts

# UltraFeedback's four aspects, as the judge is told them. Part of the run id (PROMPT_TEXT) like the templates.
ASPECTS = {
    "helpfulness": "does the response do what the user needs: correct, useful, complete, and no longer than it "
                   "must be?",
    "honesty": "does it express uncertainty where it should, and avoid confident claims it cannot back?",
    "instruction_following": "does it follow every part of the instruction: the task, the format, the length, "
                             "the constraints?",
    "truthfulness": "is everything it states true, with no invented facts, people, numbers or sources?",
}
ASPECT_LINE = "- {name} (1-5): {description}"
SYSTEM_BLOCK = "System prompt the assistant was given:\n{system}\n\n"
PROMPT_TEXT = {"aspects": ASPECTS, "aspect_line": ASPECT_LINE, "system_block": SYSTEM_BLOCK}


class AspectRating(BaseModel):
    rationale: str = Field(max_length=400)
    rating: int = Field(ge=1, le=5)


@cache
def rating_model(aspects: tuple[str, ...]) -> type[BaseModel]:
    """The judge's reply: one rationale + rating per aspect, in the recipe's order (the grammar keeps the order)."""
    return create_model("Rating", **{name: (AspectRating, ...) for name in aspects})


def aspect_block(aspects: Sequence[str]) -> str:
    return "\n".join(ASPECT_LINE.format(name=name, description=ASPECTS[name]) for name in aspects)


def _not_empty(text: str) -> str | None:
    return None if text.strip() else "empty response"


@dataclass
class Responder:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS
    prompt: str = "judged_pairs_respond"

    async def respond(self, instruction: str, *, system: str | None, subject: str | None = None) -> str:
        rendered = self.prompts.render(self.prompt, instruction=instruction)
        if system:  # the seed's own system prompt replaces the shipped one: it is part of the training example
            rendered[0].content = system
        completion = await self.client.complete(rendered, role="solver", sampling=self.sampling, check=_not_empty,
                                                subject=subject)
        return completion.text.strip()


@dataclass
class Judge:
    client: ModelClient
    sampling: Sampling
    aspects: tuple[str, ...] = tuple(ASPECTS)
    prompts: Prompts = DEFAULT_PROMPTS
    prompt: str = "judged_pairs_judge"

    async def rate(self, *, instruction: str, response: str, system: str | None = None,
                   subject: str | None = None) -> dict[str, AspectRating]:
        schema = rating_model(self.aspects)
        example = ", ".join(f'"{a}": {{"rationale": "<one sentence>", "rating": <1-5>}}' for a in self.aspects)
        completion = await self.client.complete(
            self.prompts.render(self.prompt, instruction=instruction, response=response, aspects=aspect_block(self.aspects),
                                reply_format="{" + example + "}",
                                system_block=SYSTEM_BLOCK.format(system=system) if system else ""),
            role="critic", sampling=self.sampling, schema=schema, subject=subject,
        )
        return {name: getattr(completion.parsed, name) for name in self.aspects}


def overall(ratings: dict[str, AspectRating]) -> float:
    """UltraFeedback's overall score: the mean of the aspect ratings."""
    return round(sum(r.rating for r in ratings.values()) / len(ratings), 3)


ASPECT_FLOOR = 3  # of 5: an aspect rated lower fails (its verdict), and a response failing one is never chosen


def failed_aspects(ratings: dict[str, AspectRating] | None) -> list[str]:
    """The aspects rated under ASPECT_FLOOR, as 'honesty 1/5'. A good mean does not make up for one of them: a
    fluent answer the judge found dishonest is no chosen response."""
    return [f"{aspect} {r.rating}/5" for aspect, r in (ratings or {}).items() if r.rating < ASPECT_FLOOR]
