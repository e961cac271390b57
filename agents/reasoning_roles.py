"""The reasoning recipe's roles: proposer, solver, critic. Prompt + call + parsing; no graph logic here."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts
from synthgraph.tools.math_answers import extract_final_answer


# Prompt text the roles fill in beside the templates; part of the run id (PROMPT_TEXT) like the templates.
DEFAULT_STYLE = "a short grade-school word problem"
EXAMPLE_BLOCK = "An example of the style only (write a different situation with different numbers):\n{example}\n"
FEEDBACK_BLOCK = "\nAn earlier attempt at this problem was wrong. A reviewer said: {feedback}\nSolve it again carefully."
PROMPT_TEXT = {"default_style": DEFAULT_STYLE, "example_block": EXAMPLE_BLOCK, "feedback_block": FEEDBACK_BLOCK}


class ProblemDraft(BaseModel):
    problem: str = Field(min_length=10, max_length=2000)
    program: str = Field(min_length=5, max_length=4000)


_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


def parse_problem_draft(text: str) -> ProblemDraft | str:
    """The proposer's reply: a `Problem:` paragraph and a fenced Python program, or what is wrong with it.

    Small code models write far better programs in a fenced block than escaped inside a JSON string.
    """
    block = _CODE_BLOCK.search(text)
    if block is None:
        return "no ```python program block"
    problem = text[: block.start()].strip()
    problem = re.sub(r"^\**\s*problem\s*:?\s*\**\s*:?", "", problem, flags=re.I).strip()
    try:
        return ProblemDraft(problem=problem, program=block.group(1).strip())
    except ValidationError as exc:
        return f"unusable problem draft: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}"


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def numbers_missing_from_problem(problem: str, program: str) -> list[str]:
    """Numbers the program computes with that the problem never states: the problem is not self-contained.

    Everyday constants (0, 1, 2, 10, 100, 60) pass, and so does a stated percentage written as a fraction
    (4% -> 0.04): they are arithmetic, not data the solver would need to be told.
    """
    stated = {float(n.replace(",", "")) for n in _NUMBER.findall(problem)}
    allowed = stated | {round(n / 100, 12) for n in stated} | {0.0, 1.0, 2.0, 10.0, 100.0, 60.0}
    code = re.sub(r"#.*", "", program)
    used = re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", code)
    return sorted({n for n in used if round(float(n), 12) not in allowed})


def _too_close(problem: str, example: str | None) -> bool:
    """A copy of the seed's example is not a new problem (small models copy readily). The same story with
    new numbers is a new problem with a new answer, so only a near-copy with the same numbers counts."""
    if not example or sorted(_NUMBER.findall(problem)) != sorted(_NUMBER.findall(example)):
        return False
    return difflib.SequenceMatcher(None, problem.lower(), example.lower()).ratio() > 0.8


class Critique(BaseModel):
    reason: str = Field(max_length=600)
    score: int = Field(ge=0, le=10)


class Diagnosis(BaseModel):
    feedback: str = Field(max_length=600)


@dataclass
class Proposer:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def write_problem(self, *, topic: str, style: str | None, example: str | None) -> ProblemDraft:
        example_block = EXAMPLE_BLOCK.format(example=example) if example else ""

        def problem_in(text: str) -> str | None:
            draft = parse_problem_draft(text)
            if isinstance(draft, str):
                return draft
            if missing := numbers_missing_from_problem(draft.problem, draft.program):
                return f"the program uses numbers the problem does not state: {', '.join(missing)}"
            return "copied the seed's example problem" if _too_close(draft.problem, example) else None

        completion = await self.client.complete(
            self.prompts.render("reasoning_proposer", topic=topic, style=style or DEFAULT_STYLE,
                   example_block=example_block),
            role="proposer",
            sampling=self.sampling,
            check=problem_in,
        )
        return parse_problem_draft(completion.text)


def _needs_final_answer(text: str) -> str | None:
    return None if extract_final_answer(text) is not None else "no final answer (expected a closing '#### <answer>' line)"


@dataclass
class Solver:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def solve(self, problem: str, *, feedback: str | None = None, subject: str | None = None) -> str:
        feedback_block = FEEDBACK_BLOCK.format(feedback=feedback) if feedback else ""
        completion = await self.client.complete(
            self.prompts.render("reasoning_solver", problem=problem, feedback_block=feedback_block),
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
    prompts: Prompts = DEFAULT_PROMPTS

    async def judge(self, *, problem: str, solution: str, reference: str, subject: str | None = None) -> Critique:
        completion = await self.client.complete(
            self.prompts.render("reasoning_critic", problem=problem, solution=solution, reference=reference),
            role="critic",
            sampling=self.sampling,
            schema=Critique,
            subject=subject,
        )
        return completion.parsed

    async def diagnose(self, *, problem: str, solution: str, subject: str | None = None) -> str:
        completion = await self.client.complete(
            self.prompts.render("reasoning_diagnose", problem=problem, solution=solution),
            role="critic",
            sampling=self.sampling,
            schema=Diagnosis,
            subject=subject,
        )
        return completion.parsed.feedback
