"""The computed verifiers a pipeline's `check` nodes name, over arguments already rendered from the state.

Each gives a three-valued `Verdict`: passed, failed, or unchecked (the check could not be made: a sandbox timeout,
output that does not parse) with a reason. Checks that run code run it in the sandbox; a `function` check runs
trusted local Python and is only reachable when the recipe sets `checks.allow_python`.
"""

from __future__ import annotations

import inspect
import json
import re
from collections import Counter
from collections.abc import Sequence
from importlib import import_module
from typing import Any

import jsonschema
from pydantic import BaseModel, Field

from synthgraph.graphs.pipeline_spec import ChecksSettings, Outcome
from synthgraph.tools.code_tests import arun_tests
from synthgraph.tools.math_answers import acheck_answer
from synthgraph.tools.sandbox import arun_python


class Verdict(BaseModel):
    outcome: Outcome
    reason: str = ""
    score: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def output(self) -> dict[str, Any]:
        """What later templates see as `{{ node.outcome }}`, `{{ node.reason }}`, ..."""
        return {"outcome": self.outcome, "reason": self.reason, "score": self.score, **self.extra}


def passed(reason: str, **extra) -> Verdict:
    return Verdict(outcome="passed", reason=reason, score=1.0, extra=extra)


def failed(reason: str, **extra) -> Verdict:
    return Verdict(outcome="failed", reason=reason, score=0.0, extra=extra)


def unchecked(reason: str, **extra) -> Verdict:
    return Verdict(outcome="unchecked", reason=reason, extra=extra)


async def run_check(verifier: str, args: dict[str, Any], settings: ChecksSettings) -> Verdict:
    """One candidate's verdict by the verifier `verifier` (not `majority`, which judges a group)."""
    return await _CHECKS[verifier](settings=settings, **args)


# ---------------------------------------------------------------------------------------- the verifiers


async def answers_match(*, candidate: str, reference: str, settings: ChecksSettings) -> Verdict:
    check = await acheck_answer(candidate, reference)
    outcome = {"match": "passed", "mismatch": "failed", "unparseable": "unchecked"}[check.outcome]
    return Verdict(outcome=outcome, reason=check.reason, score={"passed": 1.0, "failed": 0.0}.get(outcome),
                   extra={"extracted": check.extracted})


async def run_tests(*, solution: str, tests: str, entry_point: str | None = None,
                    settings: ChecksSettings) -> Verdict:
    run = await arun_tests(solution, tests, entry_point=entry_point, timeout_s=settings.sandbox_timeout_s,
                           memory_mb=settings.sandbox_memory_mb)
    if run.outcome == "passed":
        return passed(run.detail or "all tests passed")
    if run.outcome == "failed":
        return failed(run.detail)
    return unchecked(f"tests could not judge it ({run.outcome}): {run.detail}")


async def validate_call(*, call: str, spec: dict[str, Any] | str, settings: ChecksSettings) -> Verdict:
    from synthgraph.tools.tool_calls import validate_call as problems_of

    try:
        parsed = json.loads(call) if isinstance(call, str) else call
        spec = json.loads(spec) if isinstance(spec, str) else spec
    except json.JSONDecodeError as exc:
        return failed(f"the call is not JSON: {exc.msg}")
    if not isinstance(parsed, dict):
        return failed("the call is not a JSON object with a name and arguments")
    problems = problems_of(parsed, spec)
    return failed("; ".join(problems)) if problems else passed("the call fits the tool's schema")


async def grounded(*, answer: str, passages: str | Sequence[str], min_support: float = 0.8,
                   settings: ChecksSettings) -> Verdict:
    from synthgraph.tools.grounding_checks import support

    share, missing_words, missing_literals = support(answer, [passages] if isinstance(passages, str) else passages)
    if share is None:
        return unchecked("the answer has no content words to look for")
    if missing_literals:
        return Verdict(outcome="failed", score=share, reason=f"not in the passages: {', '.join(missing_literals[:5])}")
    if share < min_support:
        return Verdict(outcome="failed", score=share,
                       reason=f"{share:.0%} of its content words are in the passages (< {min_support:.0%}); "
                              f"missing: {', '.join(missing_words[:8])}")
    return Verdict(outcome="passed", score=share, reason=f"{share:.0%} of its content words are in the passages")


async def json_schema(*, value: str, schema: dict[str, Any], settings: ChecksSettings) -> Verdict:
    try:
        document = json.loads(value)
    except json.JSONDecodeError as exc:
        return failed(f"not JSON: {exc.msg} at character {exc.pos}")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        return failed(f"at {where}: {error.message}")
    return passed("valid against the schema")


async def regex(*, value: str, pattern: str, full: bool = False, settings: ChecksSettings) -> Verdict:
    found = (re.fullmatch if full else re.search)(pattern, value, flags=re.S)
    return passed(f"matches {pattern!r}") if found else failed(f"does not {'fully ' if full else ''}match {pattern!r}")


async def length(*, value: str, min_words: int | None = None, max_words: int | None = None,
                 min_chars: int | None = None, max_chars: int | None = None, settings: ChecksSettings) -> Verdict:
    words, chars = len(value.split()), len(value.strip())
    for size, unit, low, high in ((words, "words", min_words, max_words), (chars, "characters", min_chars, max_chars)):
        if low is not None and size < low:
            return failed(f"{size} {unit} < {low}")
        if high is not None and size > high:
            return failed(f"{size} {unit} > {high}")
    return passed(f"{words} words, {chars} characters")


async def not_a_copy(*, text: str, source: str, max_overlap: float = 0.5, n: int = 5,
                     settings: ChecksSettings) -> Verdict:
    """A rewrite must not be the source again: the share of its word n-grams found verbatim in the source."""
    def grams(words: list[str]) -> set[tuple[str, ...]]:
        return {tuple(words[i:i + n]) for i in range(max(0, len(words) - n + 1))}

    mine, theirs = grams(re.findall(r"\w+", text.lower())), grams(re.findall(r"\w+", source.lower()))
    if not mine:
        return unchecked(f"shorter than {n} words: nothing to compare")
    overlap = len(mine & theirs) / len(mine)
    verdict = Verdict(outcome="failed" if overlap > max_overlap else "passed", score=1 - overlap,
                      reason=f"{overlap:.0%} of its {n}-word runs are copied from the source "
                             f"({'>' if overlap > max_overlap else '<='} {max_overlap:.0%})")
    return verdict


async def run_program(*, code: str, prelude: str = "", settings: ChecksSettings) -> Verdict:
    """Run a (model-written) program in the sandbox; passes when it exits cleanly and prints one answer."""
    from synthgraph.graphs.reasoning import reference_from_output

    fenced = _FENCED.search(code)  # a model's reply: the program is its first ``` block when it has one
    code = fenced.group(1) if fenced else code
    run = await arun_python(prelude + "\n" + code if prelude else code, timeout_s=settings.sandbox_timeout_s,
                            memory_mb=settings.sandbox_memory_mb)
    stdout = run.stdout[-2000:]
    if run.timed_out:
        return failed(f"timed out after {settings.sandbox_timeout_s}s", stdout=stdout, answer=None)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return failed(f"exit {run.returncode}: {last}", stdout=stdout, answer=None)
    answer = reference_from_output(run.stdout)
    if answer is None:
        return failed(f"printed no single answer: {stdout[-200:]!r}", stdout=stdout, answer=None)
    return passed(f"printed {answer}", stdout=stdout, answer=answer)


_FENCED = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.S)
_SNIPPET_PRELUDE = "import json\ninputs = json.load(open('inputs.json'))\n"


async def python(*, code: str, inputs: dict[str, Any] | None = None, settings: ChecksSettings) -> Verdict:
    """A snippet run in the sandbox with `inputs` (a dict); its last line printed is the verdict: `passed`,
    `failed` or `unchecked`, optionally `: reason`, or a JSON object {outcome, reason, score}."""
    run = await arun_python(_SNIPPET_PRELUDE + code, files={"inputs.json": json.dumps(inputs or {})},
                            timeout_s=settings.sandbox_timeout_s, memory_mb=settings.sandbox_memory_mb)
    stdout = run.stdout[-2000:]
    if run.timed_out or run.returncode != 0:
        last = "timed out" if run.timed_out else (run.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return unchecked(f"the check itself failed: {last}", stdout=stdout)
    lines = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last.startswith("{"):
        try:
            return Verdict.model_validate({**json.loads(last), "extra": {"stdout": stdout}})
        except ValueError as exc:
            return unchecked(f"the check printed a verdict that does not parse: {exc}", stdout=stdout)
    word, _, reason = last.partition(":")
    if word.strip().lower() not in ("passed", "failed", "unchecked"):
        return unchecked(f"the check's last line must be passed / failed / unchecked (got {last[:80]!r})",
                         stdout=stdout)
    return Verdict(outcome=word.strip().lower(), reason=reason.strip(), extra={"stdout": stdout},
                   score={"passed": 1.0, "failed": 0.0}.get(word.strip().lower()))


async def function(*, ref: str, args: dict[str, Any] | None = None, settings: ChecksSettings) -> Verdict:
    """Trusted local Python (`package.module:function`), allowed by `checks.allow_python`. It returns a bool, an
    outcome word, (outcome, reason), or a mapping with outcome / reason / score."""
    module, _, name = ref.partition(":")
    try:
        target = getattr(import_module(module), name)
    except (ImportError, AttributeError) as exc:
        return unchecked(f"{ref} could not be loaded: {exc}")
    try:
        result = target(**(args or {}))
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # the user's function failing is its verdict being unknown, not the run failing
        return unchecked(f"{ref} raised {type(exc).__name__}: {exc}")
    if isinstance(result, bool):
        return passed(f"{ref} returned True") if result else failed(f"{ref} returned False")
    if isinstance(result, str):
        return Verdict(outcome=result, reason=f"{ref} said {result}")
    if isinstance(result, tuple):
        return Verdict(outcome=result[0], reason=str(result[1]))
    return Verdict.model_validate(result)


_CHECKS = {f.__name__: f for f in (answers_match, run_tests, validate_call, grounded, json_schema, regex, length,
                                   not_a_copy, run_program, python, function)}


def majority(values: Sequence[Any], *, min_share: float = 0.5) -> list[Verdict]:
    """Co-annotation: the candidates that agree with the majority value pass, the others fail; with no majority
    (more than `min_share` of the candidates) every candidate is unchecked, for a human to decide."""
    if not values:
        return []
    keys = [json.dumps(v, sort_keys=True).lower() if not isinstance(v, str) else v.strip().lower() for v in values]
    top, count = Counter(keys).most_common(1)[0]
    tally = ", ".join(f"{k} x{c}" for k, c in Counter(keys).most_common())
    if count / len(keys) <= min_share:
        return [unchecked(f"no majority among {len(keys)} annotators ({tally})", value=None)
                for _ in keys]
    winner = values[keys.index(top)]
    return [Verdict(outcome="passed" if k == top else "failed", score=count / len(keys), extra={"value": winner},
                    reason=f"{'agrees with' if k == top else 'disagrees with'} the majority {top!r} ({tally})")
            for k in keys]
