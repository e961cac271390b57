"""Final answers of math solutions, and whether a final answer equals a reference (math-verify).

    extract_final_answer(solution)        '#### 18', the last \\boxed{...}, or 'The answer is 18.'  ->  '18'
    check_answer(solution, reference)     match / mismatch / unparseable, with the extracted answer and a reason
    await acheck_answer(solution, ref)    the same from a coroutine (a worker thread only when a helper is needed)
    answers_match(solution, reference)    check_answer(...).outcome == "match"

Extraction is plain text work and runs in the caller, as does comparing two plain integers. Any other
comparison runs in a helper interpreter: sympy can spend unbounded time and memory on a legal answer such as
9^{9^{9^{9}}}, and math-verify's own timeouts use SIGALRM, which Python only allows in the main thread, while graph nodes call this from worker threads
(`asyncio.to_thread`). Nothing can stop a running thread, but a process can be killed, so each check gets
a deadline and a helper that overruns it is killed and replaced. Helpers are kept and reused, so a check
costs a round trip through a pipe, not an interpreter start.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import re
import resource
import select
import signal
import subprocess
import sys
import threading
from contextlib import suppress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CHECK_TIMEOUT_S", "AnswerCheck", "acheck_answer", "answers_match", "check_answer", "extract_final_answer"]

CHECK_TIMEOUT_S = 10.0
# Importing sympy and warming up the LaTeX parser takes about a second on an idle machine and much longer
# beside a busy model server; that is not the check's time.
_HELPER_START_TIMEOUT_S = 120.0
# One helper per core at most: a check is CPU-bound, and graph instances share the cores with the model.
_MAX_HELPERS = max(1, min(4, os.cpu_count() or 1))
# A runaway big-integer power can eat gigabytes within the deadline. Capped (a helper rests below 100 MB),
# it fails with MemoryError instead of taking memory from the model server.
_HELPER_MEMORY_BYTES = 2 * 1024**3
# A helper whose parent died mid-check has nobody to kill it; its own alarm ends it this long after the deadline.
_ORPHAN_GRACE_S = 5
_QUOTE_CHARS = 120


class AnswerCheck(BaseModel):
    """The verdict on one solution. "unparseable" means the check could not be made, not that it failed."""

    model_config = ConfigDict(frozen=True)

    outcome: Literal["match", "mismatch", "unparseable"]
    extracted: str | None
    reason: str


def extract_final_answer(solution: str) -> str | None:
    """The solution's final answer, tidied ('1,000' -> '1000', '$18.' -> '18', '5 apples' -> '5'), or None.

    An explicit marker wins over a sentence: the later of the last '#### ...' line and the last \\boxed{...};
    failing both, the last 'the answer is ...' / 'Final answer: ...' / 'Answer: ...'.
    """
    marked = [found for found in (_after_last_gsm8k_marker(solution), _last_boxed(solution)) if found]
    if marked:
        return _tidy(max(marked)[1]) or None
    sentences = [m["answer"] for m in _ANSWER_SENTENCE.finditer(solution) if m["answer"].strip()]
    if sentences:
        return _tidy(_SENTENCE_END.split(sentences[-1], maxsplit=1)[0]) or None
    return None


async def acheck_answer(candidate: str, reference: str, *, timeout_s: float = CHECK_TIMEOUT_S) -> AnswerCheck:
    """`check_answer` for a coroutine: a check that needs a helper waits for it in a worker thread, one that
    does not (no final answer, two plain integers) is answered at once, without the hop to a thread."""
    check = _check_in_caller(candidate, reference, timeout_s)
    if isinstance(check, AnswerCheck):
        return check
    return await asyncio.to_thread(_in_helper, check)


def answers_match(candidate: str, reference: str, *, timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    """Whether the final answer of the solution `candidate` equals the bare answer `reference`."""
    return check_answer(candidate, reference, timeout_s=timeout_s).outcome == "match"


def check_answer(candidate: str, reference: str, *, timeout_s: float = CHECK_TIMEOUT_S) -> AnswerCheck:
    """Compare the final answer of the solution `candidate` with `reference` mathematically (0.5 == 1/2).

    Safe to call from any thread. Returns within about `timeout_s` once a helper is free (starting one,
    on first use or after a helper was killed, takes a second or more).
    """
    check = _check_in_caller(candidate, reference, timeout_s)
    return check if isinstance(check, AnswerCheck) else _in_helper(check)


def _check_in_caller(candidate: str, reference: str, timeout_s: float) -> AnswerCheck | _Request:
    """The verdict where the caller can give it (no final answer, two plain integers), else the helper's request."""
    extracted = extract_final_answer(candidate)
    if extracted is None:
        return AnswerCheck(outcome="unparseable", extracted=None,
                           reason="no final answer found (expected '#### <answer>', \\boxed{...} or 'The answer is ...')")
    reference_answer = extract_final_answer(reference) or _tidy(reference)
    return (_compare_integers(extracted, reference_answer)
            or _Request(candidate=extracted, reference=reference_answer, timeout_s=timeout_s))


# ---- extraction ----------------------------------------------------------------------------------------

_GSM8K_MARKER = re.compile(r"####[ \t]*(?P<answer>[^\n]*)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_SENTENCE = re.compile(
    r"(?im)(?:\b(?:final|correct)\s+answer|\bthe\s+answer|^[\W_]*answer)[*_]*\s*"
    r"(?:(?:is|was|would\s+be|will\s+be)\b\s*:?|[:=])\s*(?P<answer>[^\n]*)"
)
# A full stop ends the sentence only before a space or the end, so '3.5' stays whole.
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_QUANTITY = re.compile(
    r"(?P<sign>[-+]?)\s*(?:\\?\$\s*)?(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.?\d+)"
    r"(?P<percent>\s*\\?%)?(?P<unit>(?:\s+[A-Za-z][A-Za-z./]*)*)"
)
# Words after a number that are arithmetic or a second value rather than a unit: '5 or 6', '2 pi'.
_NOT_UNITS = frozenset({"and", "or", "to", "by", "pi", "plus", "minus", "times", "over", "divided"})
_ENCLOSURES = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("\\text{", "}"), ("\\textbf{", "}"))


def _after_last_gsm8k_marker(text: str) -> tuple[int, str] | None:
    found = [m for m in _GSM8K_MARKER.finditer(text) if m["answer"].strip()]
    return (found[-1].start(), found[-1]["answer"]) if found else None


def _last_boxed(text: str) -> tuple[int, str] | None:
    for opening in reversed(list(_BOXED.finditer(text))):
        content = _braced_content(text, opening.end())
        if content is not None and content.strip():
            return opening.start(), content
    return None


def _braced_content(text: str, start: int) -> str | None:
    """The text from `start` up to the brace that closes the one just before it; None if it never closes."""
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # \{ and \} are literal braces (sets), not grouping
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[start:i]
        i += 1
    return None


def _tidy(answer: str) -> str:
    text = " ".join(answer.split())
    previous = None
    while text != previous:
        previous = text
        text = text.strip(" *_").rstrip(".;").strip()  # not "!": 5! is an answer
        text = _unwrapped(text)
    quantity = _QUANTITY.fullmatch(text)
    if quantity and _is_unit(quantity["unit"]):
        percent = "%" if quantity["percent"] else ""
        return f"{quantity['sign']}{quantity['number'].replace(',', '')}{percent}"
    return text


def _unwrapped(text: str) -> str:
    for opening, closing in _ENCLOSURES:
        inner = text[len(opening):len(text) - len(closing)]
        if text.startswith(opening) and text.endswith(closing) and len(text) > len(opening) + len(closing):
            if closing == "}" and _braced_content(text, len(opening)) != inner:
                continue  # '\text{a} + \text{b}' is not one \text{...}
            if opening == "$" and "$" in inner:
                continue  # '$x=2$ or $x=3$' is two formulas
            return inner.strip()
    boxed = _BOXED.match(text)
    if boxed and _braced_content(text, boxed.end()) == text[boxed.end():-1]:
        return text[boxed.end():-1].strip()
    return text


def _is_unit(words: str) -> bool:
    # One-letter words may be variables ('5 x'); math-verify itself drops the common one-letter units.
    return all(len(word) > 1 and word.lower() not in _NOT_UNITS for word in words.split())


# ---- comparison of plain integers, in the caller ---------------------------------------------------------

# Up to 15 digits math-verify compares integers exactly (its numeric precision is 15 significant digits), so
# for such pairs Python's int gives its verdict without the round trip to a helper: the common case (GSM8K
# answers are integers) costs microseconds instead of a pipe, a thread and a parse by sympy.
_PLAIN_INTEGER = re.compile(r"[-+]?\d{1,15}")


def _compare_integers(candidate: str, reference: str) -> AnswerCheck | None:
    if not (_PLAIN_INTEGER.fullmatch(candidate) and _PLAIN_INTEGER.fullmatch(reference)):
        return None
    return _verdict(candidate, reference, int(candidate) == int(reference))


def _verdict(candidate: str, reference: str, same: bool) -> AnswerCheck:
    if same:
        return AnswerCheck(outcome="match", extracted=candidate,
                           reason=f"{_quote(candidate)} equals the reference {_quote(reference)}")
    return AnswerCheck(outcome="mismatch", extracted=candidate,
                       reason=f"{_quote(candidate)} differs from the reference {_quote(reference)}")


# ---- comparison, in a helper process -------------------------------------------------------------------

class _Request(BaseModel):
    candidate: str
    reference: str
    timeout_s: float = Field(gt=0)


def _compare(candidate: str, reference: str) -> AnswerCheck:
    """Runs in a helper: parse both bare answers with math-verify and compare them."""
    # Imported here so that only helpers pay for sympy, in time and in memory.
    from math_verify import LatexExtractionConfig, parse, verify

    def parsed(answer: str) -> list:
        if not answer:
            return []
        # The answers are already extracted, so they are read as one LaTeX formula; without a fallback,
        # math-verify returns [] rather than the raw string when the formula does not parse.
        formula = answer if "$" in answer else f"${answer}$"
        return parse(formula, [LatexExtractionConfig()], fallback_mode="no_fallback", parsing_timeout=None)

    def unparseable(reason: str) -> AnswerCheck:
        return AnswerCheck(outcome="unparseable", extracted=candidate, reason=reason)

    try:
        gold = parsed(reference)
        if not gold:
            return unparseable(f"math-verify could not parse the reference answer {_quote(reference)}")
        target = parsed(candidate)
        if not target:
            return unparseable(f"math-verify could not parse the final answer {_quote(candidate)}")
        # raise_on_error: a comparison that broke is a check not made, which plain verify() reports as False.
        same = verify(gold, target, timeout_seconds=None, raise_on_error=True)
    except MemoryError:
        return unparseable(f"comparing {_quote(candidate)} with {_quote(reference)} ran out of memory")
    except Exception as exc:
        return unparseable(f"math-verify failed on {_quote(candidate)} vs {_quote(reference)}: {type(exc).__name__}")
    return _verdict(candidate, reference, same)


def _quote(answer: str) -> str:
    return repr(answer if len(answer) <= _QUOTE_CHARS else answer[:_QUOTE_CHARS] + "...")


def _serve() -> None:
    """The helper's main loop: one JSON request per line on stdin, one AnswerCheck per line back."""
    # Anything a library prints would corrupt the replies, so replies get their own copy of the pipe and
    # fd 1 is pointed at stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    # math-verify warns that its timeouts are off; the parent's deadline replaces them.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    resource.setrlimit(resource.RLIMIT_AS, (_HELPER_MEMORY_BYTES, _HELPER_MEMORY_BYTES))
    _compare("1", "1")  # load the LaTeX parser before saying ready, so no check pays for it
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        request = _Request.model_validate_json(line)
        signal.alarm(math.ceil(request.timeout_s) + _ORPHAN_GRACE_S)
        verdict = _compare(request.candidate, request.reference)
        signal.alarm(0)
        replies.write(verdict.model_dump_json() + "\n")
        replies.flush()


class _Helper:
    """The parent's handle on one helper process, used by one thread at a time."""

    def __init__(self) -> None:
        # A session of its own keeps a Ctrl-C meant for the run from reaching the helpers as a traceback;
        # they leave when their stdin closes with the parent.
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, encoding="utf-8", start_new_session=True,
        )
        # poll, not select: a busy server's descriptors can be numbered past select()'s limit of 1024.
        self._replies = select.poll()
        self._replies.register(self._process.stdout, select.POLLIN)
        if self._reply_within(_HELPER_START_TIMEOUT_S) != "ready\n":
            self.kill()
            raise RuntimeError(f"the math-verify helper ({sys.executable} -m {__name__}) did not start; "
                               "its stderr above says why")

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def check(self, request: _Request) -> AnswerCheck:
        try:
            self._process.stdin.write(request.model_dump_json() + "\n")
            self._process.stdin.flush()
            reply = self._reply_within(request.timeout_s)
        except OSError:
            reply = ""
        if reply:
            return AnswerCheck.model_validate_json(reply)
        timed_out = self.alive
        self.kill()
        reason = (f"checking took longer than {request.timeout_s:g} s" if timed_out
                  else f"the math-verify helper died (exit status {self._process.returncode})")
        return AnswerCheck(outcome="unparseable", extracted=request.candidate, reason=reason)

    def kill(self) -> None:
        self._process.kill()
        self.close()

    def close(self) -> None:
        # The end of its input ends an idle helper's loop; a killed one may leave an unsent request behind.
        with suppress(BrokenPipeError):
            self._process.stdin.close()
        self._process.stdout.close()
        self._process.wait()

    def _reply_within(self, timeout_s: float) -> str:
        # One reply per request, so Python's read buffer is empty whenever poll() looks at the pipe.
        # A helper that died reads as an empty reply, like one that overran.
        ready = self._replies.poll(timeout_s * 1000)
        return self._process.stdout.readline() if ready else ""


_helper_slots = threading.BoundedSemaphore(_MAX_HELPERS)
_idle_helpers: list[_Helper] = []
_idle_lock = threading.Lock()


def _in_helper(request: _Request) -> AnswerCheck:
    with _helper_slots:
        with _idle_lock:
            helper = _idle_helpers.pop() if _idle_helpers else None
        if helper is None or not helper.alive:
            helper = _Helper()
        verdict = helper.check(request)
        if helper.alive:
            with _idle_lock:
                _idle_helpers.append(helper)
        return verdict


@atexit.register
def _close_idle_helpers() -> None:
    with _idle_lock:
        while _idle_helpers:
            _idle_helpers.pop().close()


if __name__ == "__main__":
    _serve()
