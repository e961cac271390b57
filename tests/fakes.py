"""Test doubles: scripted chat models that play every reasoning (or code) role, and a model pool built on them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from synthgraph.agents.models import ModelPool, ModelSpec, ScriptedChatModel
from synthgraph.graphs.family import families


def script_role(kwargs, replies) -> str:
    """Which scripted reply a call gets: its prompt template's name without the family prefix when the script
    has a reply by that name (the critic's `diagnose` or `judge` prompt), else the calling role. Both reach the
    chat model as call metadata, so no prompt wording decides it."""
    role, prompt = kwargs["role"], kwargs["prompt"] or ""
    key = next((prompt.removeprefix(f"{name}_") for name in families() if prompt.startswith(f"{name}_")), None)
    if key in replies:
        return key
    if role in replies:
        return role
    raise AssertionError(f"no scripted reply for role {role!r} (prompt {prompt!r})")


def proposal(problem: str, program: str) -> str:
    """A proposer reply in the format agents/prompts/reasoning_proposer.md asks for."""
    return f"Problem: {problem}\n```python\n{program}\n```"


def by_step(*replies: str) -> Callable:
    """A stepped reply: the n-th reply for the n-th turn of a multi-turn role (TIR), the last one after that."""
    return lambda messages: replies[min(solver_step(messages), len(replies) - 1)]


class ReasoningScript:
    """Scripted replies per role (or per template: `tir`, `reference`, `diagnose`); each may be a string or a
    function of the prompt messages."""

    def __init__(self, **replies: str | Callable):
        self.replies = {
            "proposer": proposal("Ann has 6 bags of 7 apples. How many apples?", "print(6 * 7)"),
            "reference": "```python\nbags = 6\napples_per_bag = 7\nprint(bags * apples_per_bag)\n```",
            "solver": "6 bags times 7 apples is 42 apples.\n#### 42",
            # The model is stopped at the closing fence on a real engine; a fake's imagined output is dropped.
            "tir": by_step("Multiply the bags by the apples per bag.\n```python\nprint(6 * 7)\n```\n```output\n41\n```",
                           "The program printed 42.\n#### 42"),
            "critic": json.dumps({"reason": "Each step follows.", "score": 8}),
            "diagnose": json.dumps({"feedback": "Multiply, do not add."}),
            **replies,
        }
        self.calls: Counter[str] = Counter()
        self.prompts: dict[str, list] = {}

    def __call__(self, messages, kwargs) -> str:
        role = script_role(kwargs, self.replies)
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


class RoleScript:
    """Scripted replies per role (see `script_role`). A reply is a string or a function of the messages; the
    `stepped` role's reply may also be a list (one reply per step of a trajectory) or a function of
    (messages, kwargs)."""

    stepped: str | None = None
    first_step = 0                              # assistant turns already in the stepped role's first prompt

    def __init__(self, defaults: dict, **replies):
        self.replies = {**defaults, **replies}
        self.calls: Counter[str] = Counter()
        self.prompts: dict[str, list] = {}
        self.kwargs: dict[str, list] = {}

    def __call__(self, messages, kwargs) -> str:
        role = script_role(kwargs, self.replies)
        self.calls[role] += 1
        self.prompts.setdefault(role, []).append(messages)
        self.kwargs.setdefault(role, []).append(kwargs)
        reply = self.replies[role]
        if role == self.stepped:
            if isinstance(reply, list):
                reply = reply[min(max(solver_step(messages) - self.first_step, 0), len(reply) - 1)]
            return reply(messages, kwargs) if callable(reply) else reply
        return reply(messages) if callable(reply) else reply


def solver_step(messages) -> int:
    """Which step of a trajectory a solver prompt asks for: one assistant turn per earlier step."""
    return sum(m.type == "ai" for m in messages)


# ------------------------------------------------------------------------------------------------ code

def code_proposal(problem: str, solution: str, tests: str) -> str:
    """A proposer reply in the format agents/prompts/code_proposer.md asks for."""
    return f"Problem: {problem}\n```python\n{solution}\n```\n```python\n{tests}\n```"


def code_reply(code: str, reasoning: str = "Walk the string once and count.") -> str:
    """A solver reply in the format agents/prompts/code_solver.md asks for."""
    return f"{reasoning}\n```python\n{code}\n```"


VOWELS_SOLUTION = "def count_vowels(s: str) -> int:\n    return sum(ch in 'aeiouAEIOU' for ch in s)"
VOWELS_TESTS = "assert count_vowels('hello') == 2\nassert count_vowels('') == 0\nassert count_vowels('AEIOU') == 5"


class CodeScript(RoleScript):
    """Scripted replies per code role (agents/prompts/code_*.md); each a string or a function of the messages."""

    def __init__(self, **replies):
        super().__init__({
            "proposer": code_proposal("Write a function count_vowels(s) that returns how many vowels s has.",
                                      VOWELS_SOLUTION, VOWELS_TESTS),
            "solver": code_reply(VOWELS_SOLUTION),
            "critic": json.dumps({"reason": "Clear and general.", "score": 8}),
        }, **replies)


# -------------------------------------------------------------------------------------------------- tool use

def call_tools(*calls: tuple[str, dict]) -> str:
    """A solver step that calls tools, in the JSON form agents/prompts/tool_use_solver.md asks for."""
    return json.dumps({"action": "call_tools", "calls": [{"name": n, "arguments": a} for n, a in calls]})


def hermes_calls(*calls: tuple[str, dict]) -> str:
    """A native (Hermes-format) tool-calling reply, as Qwen-family chat templates teach it."""
    return "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in calls)


def answer(content: str) -> str:
    return json.dumps({"action": "answer", "content": content})


class ToolUseScript(RoleScript):
    """Scripted replies per tool-use role; `solver` may be a list (one reply per step) or a function of
    (messages, kwargs)."""

    stepped = "solver"

    def __init__(self, **replies):
        super().__init__({
            "proposer": json.dumps({"request": "How many kilometres is 26.2 miles? I am training for a marathon."}),
            "solver": [call_tools(("convert_units", {"value": 26.2, "from_unit": "mi", "to_unit": "km"})),
                       answer("26.2 miles is about 42.16 km.")],
            "critic": json.dumps({"reason": "Right tool, right values, answer matches.", "satisfied": True, "score": 9}),
        }, **replies)


# ------------------------------------------------------------------------------------------- grounded QA

def offered_citations(kwargs) -> list[str]:
    """The chunk ids a domain solver step may cite: its grammar's answer form's enum (none: it may not answer)."""
    for form in kwargs["json_schema"]["anyOf"]:
        if form["properties"]["action"] == {"const": "answer"}:
            return form["properties"]["citations"]["items"]["enum"]
    return []


def search_again(query: str) -> str:
    return json.dumps({"action": "search", "query": query})


def grounded_answer(text: str, *citations: str) -> str:
    return json.dumps({"action": "answer", "answer": text, "citations": list(citations)})


def cite_best(text: str) -> Callable:
    """A solver step that answers `text` citing the best chunk retrieved so far."""
    return lambda messages, kwargs: grounded_answer(text, offered_citations(kwargs)[0])


def decline(reason: str) -> str:
    return json.dumps({"action": "decline", "reason": reason})


class DomainScript(RoleScript):
    """Scripted replies per grounded-QA role; `solver` may be a list (one reply per step: the first comes after
    the graph's own search) or a function of (messages, kwargs)."""

    stepped, first_step = "solver", 1

    def __init__(self, **replies):
        super().__init__({
            "proposer": json.dumps({"question": "How long does the Aurora kettle take to boil a litre of water?"}),
            "solver": [cite_best("The Aurora kettle boils one litre of water in 210 seconds.")],
            "critic": json.dumps({"reason": "Clear question; the passage states it.", "question_ok": True,
                                  "supported": True, "score": 9}),
        }, **replies)
