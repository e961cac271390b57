"""Test doubles: a scripted chat model that plays every reasoning role, and a model pool built on it."""

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
