"""The reasoning recipe's roles: proposer, solver, critic. Prompt + call + parsing; no graph logic here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from pydantic import BaseModel, Field

from synthgraph.agents.models import ModelClient, Sampling, system_message, user_message
from synthgraph.tools.math_answers import extract_final_answer


@cache
def prompt_template(name: str) -> tuple[str, str]:
    """(system, user) templates from agents/prompts/NAME.md, split at its `## system` / `## user` headings."""
    text = resources.files("synthgraph.agents").joinpath("prompts", f"{name}.md").read_text()
    _, _, rest = text.partition("## system\n")
    system, _, user = rest.partition("## user\n")
    if not system.strip() or not user.strip():
        raise ValueError(f"prompt {name}.md needs a '## system' and a '## user' section")
    return system.strip(), user.strip()


def render(name: str, **fields: str):
    system, user = prompt_template(name)
    return [system_message(system), user_message(user.format(**fields))]


class ProblemDraft(BaseModel):
    problem: str = Field(min_length=10, max_length=1500)
    program: str = Field(min_length=5, max_length=3000)


class Critique(BaseModel):
    reason: str = Field(max_length=600)
    score: int = Field(ge=0, le=10)


class Diagnosis(BaseModel):
    feedback: str = Field(max_length=600)


@dataclass
class Proposer:
    client: ModelClient
    sampling: Sampling

    async def write_problem(self, *, topic: str, style: str | None, example: str | None) -> ProblemDraft:
        example_block = f"For inspiration only (write a different problem):\n{example}\n" if example else ""
        completion = await self.client.complete(
            render("reasoning_proposer", topic=topic, style=style or "a short grade-school word problem",
                   example_block=example_block),
            role="proposer",
            sampling=self.sampling,
            schema=ProblemDraft,
        )
        return completion.parsed


def _needs_final_answer(text: str) -> str | None:
    return None if extract_final_answer(text) is not None else "no final answer (expected a closing '#### <answer>' line)"


@dataclass
class Solver:
    client: ModelClient
    sampling: Sampling

    async def solve(self, problem: str, *, feedback: str | None = None, subject: str | None = None) -> str:
        feedback_block = (
            f"\nAn earlier attempt at this problem was wrong. A reviewer said: {feedback}\nSolve it again carefully."
            if feedback
            else ""
        )
        completion = await self.client.complete(
            render("reasoning_solver", problem=problem, feedback_block=feedback_block),
            role="solver",
            sampling=self.sampling,
            check=_needs_final_answer,
            subject=subject,
        )
        return completion.text


@dataclass
class Critic:
    client: ModelClient
    sampling: Sampling

    async def judge(self, *, problem: str, solution: str, reference: str, subject: str | None = None) -> Critique:
        completion = await self.client.complete(
            render("reasoning_critic", problem=problem, solution=solution, reference=reference),
            role="critic",
            sampling=self.sampling,
            schema=Critique,
            subject=subject,
        )
        return completion.parsed

    async def diagnose(self, *, problem: str, solution: str, subject: str | None = None) -> str:
        completion = await self.client.complete(
            render("reasoning_diagnose", problem=problem, solution=solution),
            role="critic",
            sampling=self.sampling,
            schema=Diagnosis,
            subject=subject,
        )
        return completion.parsed.feedback
