"""Test doubles: scripted chat models that play every reasoning (or code) role, and a model pool built on them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from synthgraph.agents.models import ModelPool, ModelSpec, ScriptedChatModel


def role_of(messages) -> str:
    """Which reasoning role a prompt is for, read off its system prompt (agents/prompts/reasoning_*.md)."""
    system = messages[0].content
    for marker, role in [("You write new", "proposer"), ("careful math tutor", "solver"),
                         ("You review worked solutions", "critic"), ("math teacher", "diagnose")]:
        if marker in system:
            return role
    raise AssertionError(f"unknown prompt: {system[:80]}")


def proposal(problem: str, program: str) -> str:
    """A proposer reply in the format agents/prompts/reasoning_proposer.md asks for."""
    return f"Problem: {problem}\n```python\n{program}\n```"


class ReasoningScript:
    """Scripted replies per role; each may be a string or a function of the prompt messages."""

    def __init__(self, **replies: str | Callable):
        self.replies = {
            "proposer": proposal("Ann has 6 bags of 7 apples. How many apples?", "print(6 * 7)"),
            "solver": "6 bags times 7 apples is 42 apples.\n#### 42",
            "critic": json.dumps({"reason": "Each step follows.", "score": 8}),
            "diagnose": json.dumps({"feedback": "Multiply, do not add."}),
            **replies,
        }
        self.calls: Counter[str] = Counter()
        self.prompts: dict[str, list] = {}

    def __call__(self, messages, kwargs) -> str:
        role = role_of(messages)
        self.calls[role] += 1
        self.prompts.setdefault(role, []).append(messages)
        reply = self.replies[role]
        return reply(messages) if callable(reply) else reply


class ScriptedPool(ModelPool):
    """A ModelPool whose every model is the same scripted fake."""

    def __init__(self, script: ReasoningScript, *, max_attempts: int = 2):
        super().__init__(max_attempts=max_attempts)
        self.script = script

    def _build(self, spec: ModelSpec):
        return ScriptedChatModel(respond=self.script)


# ------------------------------------------------------------------------------------------------ code

CODE_ROLES = [("You write new Python programming problems", "proposer"), ("expert Python programmer", "solver"),
              ("You review Python solutions", "critic")]


def code_proposal(problem: str, solution: str, tests: str) -> str:
    """A proposer reply in the format agents/prompts/code_proposer.md asks for."""
    return f"Problem: {problem}\n```python\n{solution}\n```\n```python\n{tests}\n```"


def code_reply(code: str, reasoning: str = "Walk the string once and count.") -> str:
    """A solver reply in the format agents/prompts/code_solver.md asks for."""
    return f"{reasoning}\n```python\n{code}\n```"


VOWELS_SOLUTION = "def count_vowels(s: str) -> int:\n    return sum(ch in 'aeiouAEIOU' for ch in s)"
VOWELS_TESTS = "assert count_vowels('hello') == 2\nassert count_vowels('') == 0\nassert count_vowels('AEIOU') == 5"


class CodeScript:
    """Scripted replies per code role (agents/prompts/code_*.md); each a string or a function of the messages."""

    def __init__(self, **replies: str | Callable):
        self.replies = {
            "proposer": code_proposal("Write a function count_vowels(s) that returns how many vowels s has.",
                                      VOWELS_SOLUTION, VOWELS_TESTS),
            "solver": code_reply(VOWELS_SOLUTION),
            "critic": json.dumps({"reason": "Clear and general.", "score": 8}),
            **replies,
        }
        self.calls: Counter[str] = Counter()
        self.prompts: dict[str, list] = {}

    def __call__(self, messages, kwargs) -> str:
        system = messages[0].content
        role = next((role for marker, role in CODE_ROLES if marker in system), None)
        if role is None:
            raise AssertionError(f"unknown prompt: {system[:80]}")
        self.calls[role] += 1
        self.prompts.setdefault(role, []).append(messages)
        reply = self.replies[role]
        return reply(messages) if callable(reply) else reply
