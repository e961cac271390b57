"""The Evol-Instruct roles: an evolver that rewrites an instruction by one operation, a responder, and a judge of
information gain (WizardLM's first elimination rule). Prompt + call + parsing."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts

# What each evolution asks for (WizardLM's in-depth operations and in-breadth mutation, in our words).
OPERATIONS = {
    "add_constraints": "Add one more constraint or requirement the answer must satisfy.",
    "deepen": "Make the request go deeper: ask about more aspects of the topic or for a more thorough treatment.",
    "concretize": "Replace general ideas with more specific, concrete ones (names, numbers, situations).",
    "increase_reasoning": "Rewrite it so that answering plainly needs several explicit reasoning steps.",
    "complicate_input": "Add a small concrete input the request works on (a table, a snippet of code or text, "
                        "a list of data) and make the request use it.",
    "breadth": "Write a brand-new request in the same domain as the given one, about something rarer, of similar "
               "length and difficulty.",
}
IN_DEPTH = tuple(op for op in OPERATIONS if op != "breadth")
PROMPT_TEXT = {"operations": OPERATIONS}


class Evolved(BaseModel):
    instruction: str = Field(min_length=5, max_length=3000)


class GainJudgement(BaseModel):
    reason: str = Field(max_length=500)
    equal: bool


@dataclass
class Evolver:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def evolve(self, instruction: str, *, operation: str, subject: str) -> str:
        completion = await self.client.complete(
            self.prompts.render("evol_instruct_evolve", instruction=instruction, operation=OPERATIONS[operation]),
            role="proposer", sampling=self.sampling, schema=Evolved, subject=subject)
        return completion.parsed.instruction.strip()


@dataclass
class GainJudge:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def equal(self, *, parent: str, child: str, subject: str) -> GainJudgement:
        completion = await self.client.complete(
            self.prompts.render("evol_instruct_gain", parent=parent, child=child),
            role="critic", sampling=self.sampling, schema=GainJudgement, subject=subject)
        return completion.parsed
