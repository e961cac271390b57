"""Computable checks of a tool-use trajectory: format, execution, tool choice, results used, reference calls.

A trajectory is its calls (each with how it fared when it was validated and run) and its final answer. The
checks read only those, so any graph can use them; none calls a model. Whether the answer is *right* is left
to a critic, except where a seed carries reference calls (BFCL's possible answers): then `reference_calls`
computes it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from synthgraph.store.rows import CheckOutcome

__all__ = ["CheckOutcome", "ExecutedCall", "reference_calls", "reference_mismatch", "results_used",
           "trajectory_checks"]


class ExecutedCall(BaseModel):
    """One tool call of a trajectory and how it fared in the format and execution stages."""

    id: str
    step: int
    name: str
    arguments: dict[str, Any]
    format_problems: list[str] = []
    execution: Literal["passed", "failed", "unchecked", "skipped"]  # skipped: invalid, so never run
    result: str | None = None       # what the tool returned (JSON text), fed back to the assistant
    error: str | None = None        # why the tool failed

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _numbers(text: str) -> list[float]:
    return [float(match.replace(",", "")) for match in _NUMBER.findall(text)]


def results_used(calls: Sequence[ExecutedCall], answer: str | None, request: str) -> CheckOutcome:
    """Is the final answer built on what the tools returned? At least one value that a tool returned — and the
    request did not already contain — must appear in the answer (numbers to within rounding). Catches answers
    made up beside the results; whether the answer is *right* stays the critic's call."""
    values = []
    for call in calls:
        if call.execution == "passed" and call.result is not None:
            values.extend(leaf for leaf in _leaves(json.loads(call.result)) if not isinstance(leaf, bool))
    request_numbers, request_text = _numbers(request), request.lower()
    numbers = [v for v in values if isinstance(v, int | float) and v not in request_numbers]
    words = [v for v in values if isinstance(v, str) and len(v) >= 3 and v.lower() not in request_text]
    if not numbers and not words:
        return CheckOutcome("unchecked", "the tools returned nothing the request did not already say")
    answer = answer or ""
    said = _numbers(answer)
    for number in numbers:
        if any(abs(a - number) <= max(abs(number) * 0.01, 0.005) for a in said):
            return CheckOutcome("passed", f"the answer uses the result {number:g}")
    for word in words:
        if word.lower() in answer.lower():
            return CheckOutcome("passed", f"the answer uses the result {word!r}")
    return CheckOutcome("failed", "the answer uses none of the values the tools returned")


def _same(value: Any, allowed: Any) -> bool:
    """BFCL-style value equality: numbers by value (2 == 2.0), strings ignoring case and outer spaces."""
    if isinstance(value, bool) or isinstance(allowed, bool):
        return value is allowed
    if isinstance(value, int | float) and isinstance(allowed, int | float):
        return math.isclose(value, allowed, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(value, str) and isinstance(allowed, str):
        return value.strip().casefold() == allowed.strip().casefold()
    if isinstance(value, list) and isinstance(allowed, list):
        return len(value) == len(allowed) and all(map(_same, value, allowed))
    if isinstance(value, dict) and isinstance(allowed, dict):
        return value.keys() == allowed.keys() and all(_same(value[k], allowed[k]) for k in value)
    return value == allowed


def reference_mismatch(call: ExecutedCall, reference: dict[str, Any]) -> str | None:
    """Why `call` is not the reference call (name, and every argument among its acceptable values; "" in a
    list means the argument may be left out), or None when it is."""
    if call.name != reference["name"]:
        return f"calls {call.name}, the reference calls {reference['name']}"
    allowed = reference.get("arguments", {})
    for argument, value in call.arguments.items():
        if argument not in allowed:
            return f"{call.name}: argument {argument!r} is not in the reference call"
        if not any(_same(value, option) for option in allowed[argument] if option != ""):
            return f"{call.name}: {argument}={json.dumps(value)}, the reference allows {json.dumps(allowed[argument])}"
    missing = [a for a, options in allowed.items() if a not in call.arguments and "" not in options]
    return f"{call.name}: leaves out {', '.join(missing)}" if missing else None


def reference_calls(calls: Sequence[ExecutedCall], ground_truth: list[dict[str, Any]]) -> CheckOutcome:
    """The calls, in any order, are exactly the reference calls (BFCL's possible answers)."""
    if len(calls) != len(ground_truth):
        return CheckOutcome("failed", f"made {len(calls)} calls, the reference has {len(ground_truth)}")
    unmatched = list(ground_truth)
    for call in calls:
        reasons = [reference_mismatch(call, reference) for reference in unmatched]
        if None not in reasons:
            same_name = [r for r in reasons if not r.startswith("calls ")]
            return CheckOutcome("failed", (same_name or reasons)[0])
        unmatched.pop(reasons.index(None))
    return CheckOutcome("passed", f"all {len(ground_truth)} calls match the reference")


def trajectory_checks(calls: Sequence[ExecutedCall], answer: str | None, *, kind: str | None, request: str,
                      ground_truth: list[dict[str, Any]] | None = None) -> dict[str, CheckOutcome]:
    """The computable verdicts of a finished trajectory (its calls and its final answer, None when it gave
    none), in the order a sample names its first failure: verifier -> (outcome, detail). `kind` is the request
    kind asked for ("no_tool" needs no call; None, a ready request naming no kind, needs some call);
    `ground_truth` the reference calls, when the seed has them."""
    invalid = [c for c in calls if c.format_problems]
    failed = [c for c in calls if c.execution == "failed"]
    spec_only = [c for c in calls if c.execution == "unchecked"]
    verdicts: dict[str, CheckOutcome] = {}
    problems = [f"{c.name}: {p}" for c in invalid for p in c.format_problems]
    verdicts["format"] = (CheckOutcome("failed", "; ".join(problems)) if invalid
                          else CheckOutcome("passed", f"{len(calls)} valid calls"))
    if failed:
        verdicts["execution"] = CheckOutcome("failed", "; ".join(f"{c.name}: {c.error}" for c in failed))
    elif spec_only:
        verdicts["execution"] = CheckOutcome("unchecked",
                                             f"spec-only tools cannot run: {', '.join(c.name for c in spec_only)}")
    elif invalid:
        verdicts["execution"] = CheckOutcome("unchecked", "invalid calls were not run")
    else:
        verdicts["execution"] = CheckOutcome("passed", f"{len(calls)} calls ran without error")
    if answer is not None and verdicts["execution"].outcome == "passed" and calls:
        verdicts["results_used"] = results_used(calls, answer, request)
    if ground_truth is not None:
        verdicts["reference_calls"] = reference_calls(calls, ground_truth)
    if kind == "no_tool":
        verdicts["tool_choice"] = (CheckOutcome("failed", "called tools for a request that needs none") if calls
                                   else CheckOutcome("passed", "answered without tools"))
    else:
        verdicts["tool_choice"] = (CheckOutcome("passed", f"{len(calls)} calls") if calls
                                   else CheckOutcome("failed", f"a {kind or 'tool'} request answered without "
                                                                "calling a tool"))
    return verdicts
