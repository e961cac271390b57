"""The reasoning recipe's roles: proposer, solver (chain of thought, or tool-integrated with Python), critic, and
the reference writer that corroborates a proposed problem's answer. Prompt + call + parsing; no graph logic here."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, Field, ValidationError

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts, RenderedPrompt
from synthgraph.tools.math_answers import extract_final_answer
from synthgraph.tools.sandbox import SandboxResult, arun_python


# Prompt text the roles fill in beside the templates; part of the run id (PROMPT_TEXT) like the templates.
DEFAULT_STYLE = "a short grade-school word problem"
EXAMPLE_BLOCK = "An example of the style only (write a different situation with different numbers):\n{example}\n"
FEEDBACK_BLOCK = "\nAn earlier attempt at this problem was wrong. A reviewer said: {feedback}\nSolve it again carefully."
# Tool-integrated reasoning: how a code block's output is shown to the solver, and the turn that asks for the
# answer once its code runs are used up.
# Measured on the 0.5B model: a `#### <answer>` placeholder was copied literally ("#### <answer>36</answer>"), an
# example answer ("like this: #### 0.75") was copied as the answer by most solutions, and a `####` in backticks
# came back with one ("#### 60`"). So the answer line is described in words, with no placeholder or example.
TOOL_OUTPUT = ("```output\n{output}\n```\nContinue from this output. When it answers the problem, finish with a last "
               "line that is #### followed by the number alone.")
FINAL_ANSWER_NOW = ("You cannot run more code. Using the outputs above, give the final answer now: a last line that is "
                    "#### followed by the number alone.")
PROMPT_TEXT = {"default_style": DEFAULT_STYLE, "example_block": EXAMPLE_BLOCK, "feedback_block": FEEDBACK_BLOCK,
               "tool_output": TOOL_OUTPUT, "final_answer_now": FINAL_ANSWER_NOW}


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


_SCORE_VALUE = re.compile(r'"score"\s*:\s*(\d)')


def expected_score(text: str, logprobs: list[dict] | None) -> float | None:
    """G-Eval's score: the probability-weighted mean over 0..10 at the token where the critic wrote its score,
    instead of the one number it sampled. None without logprobs or a score in the text.

    Qwen tokenizers write one digit per token, so 10 is "1" then "0": a leading "1" counts as 10 with the
    probability that "0" follows it. That is known when the sampled score began with "1"; otherwise it is not
    observed and the "1" branch counts as the mean of 1 and 10.
    """
    match = _SCORE_VALUE.search(text)
    if not logprobs or match is None:
        return None
    offset, index = 0, None
    for i, position in enumerate(logprobs):
        if offset <= match.start(1) < offset + len(position["token"]):
            index = i
            break
        offset += len(position["token"])
    if index is None or logprobs[index]["token"].strip() != match.group(1):
        return None
    digits = {c["token"].strip(): math.exp(c["logprob"]) for c in logprobs[index]["top_logprobs"]
              if len(c["token"].strip()) == 1 and c["token"].strip().isdigit()}
    if not digits:
        return None
    ten_after_one = 0.5
    if match.group(1) == "1" and index + 1 < len(logprobs):
        following = {c["token"]: math.exp(c["logprob"]) for c in logprobs[index + 1]["top_logprobs"]}
        ten_after_one = following.get("0", 0.0) / max(sum(following.values()), 1e-12)
    values = {d: float(d) for d in digits} | ({"1": 1 + 9 * ten_after_one} if "1" in digits else {})
    return sum(p * values[d] for d, p in digits.items()) / sum(digits.values())


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


# ------------------------------------------------------------------------------ tool-integrated reasoning

PYTHON_TOOL = {
    "type": "function",
    "function": {
        "name": "python",
        "description": "Run a Python program (variables from earlier calls are kept) and return what it prints.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string", "description": "the program"}},
                       "required": ["code"]},
    },
}
"""The tool a TIR trace calls, as an OpenAI spec: samples keep it in `payload.tools`, exports lift it to `tools`."""

# The model is stopped where a code block closes, so it waits for the real output instead of imagining one.
CLOSE_FENCE = "\n```\n"
_TIR_BLOCK = re.compile(r"```(?:python|py)[ \t]*\n(.*?)(?:\n?```|\Z)", re.S)
PRELUDE = "import math\nfrom fractions import Fraction\n"
# Earlier blocks are run again before the new one (the sandbox keeps no interpreter between runs); their
# prints are swallowed so the solver sees only what the new block printed.
_MUTE = "import sys as _sys, io as _io\n_shown = _sys.stdout\n_sys.stdout = _io.StringIO()\n"
_UNMUTE = "_sys.stdout = _shown\n"
OUTPUT_CHARS = 1200


class ToolStep(BaseModel):
    """One code run of a TIR solution: the reasoning before the block, the block, and what the solver was shown."""

    text: str
    code: str
    output: str
    status: Literal["ok", "error", "timeout"]
    duration_s: float


class ToolTrace(BaseModel):
    steps: list[ToolStep]
    final: str                            # the closing message, with the `#### <answer>` line
    stop_reason: Literal["answered", "step_limit", "time_limit"]



def parse_tir_step(text: str) -> tuple[str, str] | None:
    """(reasoning, code) of a TIR reply that writes a python block; None when it writes none (a final answer).
    Anything after the first block is dropped: it can only be an output the model imagined."""
    block = _TIR_BLOCK.search(text)
    if block is None or not block.group(1).strip():
        return None
    return text[: block.start()].strip(), block.group(1).strip("\n")


def _step_or_answer(text: str) -> str | None:
    if parse_tir_step(text) is not None or extract_final_answer(text) is not None:
        return None
    return "neither a ```python block nor a final answer (expected a closing '#### <answer>' line)"


def cumulative_program(earlier: list[ToolStep], code: str) -> str:
    """The program a new block runs as: the prelude, the earlier blocks that ran cleanly (muted), then the block."""
    kept = [s.code for s in earlier if s.status == "ok"]
    if not kept:
        return PRELUDE + code
    return PRELUDE + _MUTE + "\n".join(kept) + "\n" + _UNMUTE + code


def describe_run(result: SandboxResult) -> tuple[str, Literal["ok", "error", "timeout"]]:
    """What the solver is shown of a run: its output, or the error's last lines, or that it timed out."""
    if result.timed_out or result.killed_by == "cpu_limit":
        return f"Timed out after {result.duration_s:.1f}s.", "timeout"
    if result.returncode != 0:
        error_lines = result.stderr.strip().splitlines()[-3:] or [f"exit status {result.returncode}"]
        return "\n".join(error_lines)[-OUTPUT_CHARS:], "error"
    out = result.stdout.strip()
    if len(out) > OUTPUT_CHARS:
        out = out[:OUTPUT_CHARS] + "\n... (output cut)"
    return out or "(no output: print the values you need)", "ok"


@dataclass
class ToolSolver:
    """ToRA-style tool-integrated reasoning: the solver writes reasoning and a python block, the block runs in
    the sandbox, its output comes back as the next turn, and so on until a `#### <answer>` line, at most
    `max_steps` runs and `sandbox_budget_s` sandbox seconds in all (then the solver must answer)."""

    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS
    max_steps: int = 4
    sandbox_budget_s: float = 30
    run_timeout_s: float = 10
    memory_mb: int = 512

    async def solve(self, problem: str, *, feedback: str | None = None, subject: str | None = None) -> ToolTrace:
        feedback_block = FEEDBACK_BLOCK.format(feedback=feedback) if feedback else ""
        messages: list[BaseMessage] = list(self.prompts.render("reasoning_tir", problem=problem,
                                                               feedback_block=feedback_block))
        steps: list[ToolStep] = []
        spent = 0.0
        while True:
            reply = await self._call(messages, check=_step_or_answer, stop=[CLOSE_FENCE], subject=subject)
            step = parse_tir_step(reply)
            if step is None:
                return ToolTrace(steps=steps, final=reply.strip(), stop_reason="answered")
            text, code = step
            result = await arun_python(cumulative_program(steps, code),
                                       timeout_s=min(self.run_timeout_s, self.sandbox_budget_s - spent),
                                       memory_mb=self.memory_mb)
            spent += result.duration_s
            output, status = describe_run(result)
            steps.append(ToolStep(text=text, code=code, output=output, status=status, duration_s=result.duration_s))
            messages.append(AIMessage(content=f"{text}\n```python\n{code}\n```".strip()))
            limit = ("step_limit" if len(steps) >= self.max_steps
                     else "time_limit" if spent >= self.sandbox_budget_s else None)
            if limit is None:
                messages.append(HumanMessage(content=TOOL_OUTPUT.format(output=output)))
                continue
            messages.append(HumanMessage(content=f"```output\n{output}\n```\n{FINAL_ANSWER_NOW}"))
            final = await self._call(messages, check=_needs_final_answer, stop=None, subject=subject)
            return ToolTrace(steps=steps, final=final.strip(), stop_reason=limit)

    async def _call(self, messages: list[BaseMessage], *, check, stop, subject) -> str:
        completion = await self.client.complete(RenderedPrompt("reasoning_tir", messages), role="solver",
                                                sampling=self.sampling, check=check, stop=stop, subject=subject)
        return completion.text


# ------------------------------------------------------------------------------ reference corroboration


@dataclass
class ReferenceWriter:
    """Writes a second, independent program for a proposed problem (it sees only the problem text), whose
    printed answer must agree with the proposer's reference."""

    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def write_program(self, problem: str, *, subject: str | None = None) -> str:
        completion = await self.client.complete(
            self.prompts.render("reasoning_reference", problem=problem),
            role="proposer",
            sampling=self.sampling,
            check=lambda text: None if _CODE_BLOCK.search(text) else "no ```python program block",
            subject=subject,
        )
        return _CODE_BLOCK.search(completion.text).group(1).strip()


@dataclass
class Critic:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def judge(self, *, problem: str, solution: str, reference: str, subject: str | None = None) -> Critique:
        return (await self.judge_with_expectation(problem=problem, solution=solution, reference=reference,
                                                  subject=subject, top_logprobs=None))[0]

    async def judge_with_expectation(self, *, problem: str, solution: str, reference: str, subject: str | None = None,
                                     top_logprobs: int | None = 20) -> tuple[Critique, float | None]:
        """The critique, and G-Eval's expected score from the score token's probabilities (`expected_score`)."""
        completion = await self.client.complete(
            self.prompts.render("reasoning_critic", problem=problem, solution=solution, reference=reference),
            role="critic",
            sampling=self.sampling,
            schema=Critique,
            subject=subject,
            top_logprobs=top_logprobs,
        )
        return completion.parsed, expected_score(completion.text, completion.logprobs)

    async def diagnose(self, *, problem: str, solution: str, subject: str | None = None) -> str:
        completion = await self.client.complete(
            self.prompts.render("reasoning_diagnose", problem=problem, solution=solution),
            role="critic",
            sampling=self.sampling,
            schema=Diagnosis,
            subject=subject,
        )
        return completion.parsed.feedback
