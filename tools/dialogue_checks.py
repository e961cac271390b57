"""Computable checks of a finished dialogue: role alternation, no empty or duplicated turn, no assistant turn
repeating an earlier one, length limits, no leaked system prompt or persona sheet. No model calls."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic import BaseModel


class CheckResult(BaseModel):
    name: str
    passed: bool
    detail: str
    turn: int | None = None               # the first message turn that failed it


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


def longest_overlap(text: str, source: str) -> str:
    a, b = normalized(text), normalized(source)
    match = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return a[match.a: match.a + match.size]


def check_dialogue(messages: Sequence[tuple[str, str]], *, system_prompt: str, persona_sheet: str,
                   max_turn_chars: int, near_duplicate: float, leak_chars: int) -> list[CheckResult]:
    """Every computable check of a dialogue as stored (`messages[i]` is turn i: an optional system turn, then
    user and assistant alternating), each passed or failed at its first offending turn."""
    results = []

    def first(name: str, problems: list[tuple[int, str]], ok: str) -> None:
        if problems:
            turn, detail = problems[0]
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            results.append(CheckResult(name=name, passed=False, detail=detail + more, turn=turn))
        else:
            results.append(CheckResult(name=name, passed=True, detail=ok))

    start = 1 if messages and messages[0][0] == "system" else 0
    expected = ["user", "assistant"]
    wrong_role = [(i, f"turn {i} is {role}, expected {expected[(i - start) % 2]}")
                  for i, (role, _) in enumerate(messages) if i >= start and role != expected[(i - start) % 2]]
    if len(messages) - start < 2 or messages[-1][0] != "assistant":
        wrong_role.append((len(messages) - 1, "the dialogue must hold a user turn and end on an assistant turn"))
    first("alternation", wrong_role, "user and assistant alternate, ending on the assistant")

    first("non_empty", [(i, f"turn {i} ({role}) is empty") for i, (role, text) in enumerate(messages)
                        if not text.strip()], "no empty turn")

    seen: dict[str, int] = {}
    duplicates = []
    for i, (role, text) in enumerate(messages[start:], start=start):
        key = normalized(text)
        if key in seen:
            duplicates.append((i, f"turn {i} repeats turn {seen[key]} word for word"))
        seen.setdefault(key, i)
    first("no_duplicate_turn", duplicates, "no turn repeats another")

    replies = [(i, normalized(text)) for i, (role, text) in enumerate(messages) if role == "assistant"]
    repeats = []
    for k, (i, text) in enumerate(replies):
        for j, earlier in replies[:k]:
            ratio = difflib.SequenceMatcher(None, text, earlier, autojunk=False).ratio()
            if ratio >= near_duplicate:
                repeats.append((i, f"assistant turn {i} repeats turn {j} (similarity {ratio:.2f})"))
                break
    first("no_repeated_assistant", repeats, f"no assistant turn is {near_duplicate:g}-similar to an earlier one")

    first("length", [(i, f"turn {i} has {len(text)} characters (limit {max_turn_chars})")
                     for i, (role, text) in enumerate(messages[start:], start=start) if len(text) > max_turn_chars],
          f"every turn within {max_turn_chars} characters")

    leaks = []
    sources = [(what, src) for what, src in [("system prompt", system_prompt), ("persona sheet", persona_sheet)]
               if len(normalized(src)) >= 20]
    for i, (role, text) in enumerate(messages):
        if role != "assistant":
            continue
        for what, source in sources:
            overlap = longest_overlap(text, source)
            if len(overlap) >= min(leak_chars, len(normalized(source))):
                leaks.append((i, f"assistant turn {i} quotes the {what}: {overlap[:80]!r}"))
    first("no_leak", leaks, "no assistant turn quotes the system prompt or persona sheet")
    return results
