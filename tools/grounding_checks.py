"""Computable checks of a reply grounded in retrieved passages: answerability, citations, support.

Support is lexical: the answer's content words (stopwords dropped, lightly stemmed) must be in the cited passages,
and its numbers and identifiers verbatim. It catches answers that drift from their sources; whether the passages
*entail* the answer stays a critic's call. No model calls.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from synthgraph.store.rows import CheckOutcome
from synthgraph.tools.retrieval import Hit

__all__ = ["CheckOutcome", "content_words", "grounding_checks", "support"]

_STOPWORDS = frozenset("""
a about after again all also an and any are as at be been before being between both but by can could did do does
done down during each either for from further had has have having he her here his how i if in into is it its just
may might more most must my no nor not of off on once one only or other our out over own same shall she should so
some such than that the their them then there these they this those through to too two under up very was we were
what when where which while who whom whose why will with would yes you your
""".split())
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)*")
# What an answer must not invent: code spans, numbers, and identifiers (snake_case, dunder, dotted, called).
_IDENTIFIER = re.compile(r"`([^`]+)`|(?<![\w.])(\d+(?:\.\d+)*|\w*_\w*|\w+(?:\.\w+)+|\w+\(\))(?![\w(])")


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """The words that carry meaning, lightly stemmed (plurals and tenses match their stem)."""
    return [_stem(w) for w in _TOKEN.findall(text) if (w.lower() not in _STOPWORDS and len(w) > 1) or w.isdigit()]


def support(answer: str, passages: Sequence[str]) -> tuple[float | None, list[str], list[str]]:
    """(share of the answer's content words found in the passages or None when it has none, the words missing,
    the numbers and identifiers missing: these must appear verbatim)."""
    text = "\n".join(passages)
    available = set(content_words(text))
    words = list(dict.fromkeys(content_words(answer)))
    missing_words = [w for w in words if w not in available]
    share = None if not words else 1 - len(missing_words) / len(words)
    literal = [m[1] or m[2] for m in _IDENTIFIER.finditer(answer)]
    missing_literals = [x for x in dict.fromkeys(literal) if x.strip().lower() not in text.lower()]
    return share, missing_words, missing_literals


def _same_passage(cited: Hit, source: Hit, overlap: float) -> bool:
    if cited.chunk_id == source.chunk_id:
        return True
    a, b = set(content_words(cited.text)), set(content_words(source.text))
    return bool(a | b) and len(a & b) / len(a | b) >= overlap


def grounding_checks(*, answerable: bool, stopped: str | None, answer: str | None, citations: Sequence[str],
                     decline_reason: str | None, retrieved: Collection[str], cited: Sequence[Hit],
                     sources: Sequence[Hit], support_threshold: float, source_overlap: float
                     ) -> dict[str, CheckOutcome]:
    """The computable verdicts of a finished reply, verifier -> (outcome, detail), in the order a sample names
    its first failure: `answerability` (answered an answerable question, declined an unanswerable one),
    `citations` (every cited id exists, was `retrieved` in this trajectory, and the passage the question was
    written from, one of `sources`, or one like it by `source_overlap`, is cited), `support` (the cited passages
    hold `support_threshold` of the answer's content words, and its numbers and identifiers verbatim). `cited` is
    what the store holds of the cited ids; `stopped` is "answered" or "declined"."""
    verdicts: dict[str, CheckOutcome] = {}
    # Answering or declining is the first thing to get right, so it is the reason a sample names first.
    if answerable:
        verdicts["answerability"] = (
            CheckOutcome("passed", "answered") if stopped == "answered" else
            CheckOutcome("failed", f"declined a question its passages answer: {decline_reason}"))
    else:
        verdicts["answerability"] = (
            CheckOutcome("passed", "declined a question the corpus does not answer") if stopped == "declined" else
            CheckOutcome("failed", "answered a question the corpus does not answer"))
    if stopped == "declined":
        verdicts["citations"] = CheckOutcome("unchecked", "declined: no claims to cite")
        verdicts["support"] = CheckOutcome("unchecked", "declined: no claims to support")
        return verdicts
    found = {h.chunk_id for h in cited}
    unknown = [c for c in citations if c not in found]
    unseen = [c for c in citations if c in found and c not in retrieved]
    sources = sources if answerable else []
    uncited = [s.chunk_id for s in sources if not any(_same_passage(h, s, source_overlap) for h in cited)]
    if unknown:
        verdicts["citations"] = CheckOutcome("failed", f"cites chunks that do not exist: {', '.join(unknown)}")
    elif unseen:
        verdicts["citations"] = CheckOutcome("failed",
                                             f"cites chunks this trajectory never retrieved: {', '.join(unseen)}")
    elif uncited:
        verdicts["citations"] = CheckOutcome("failed", f"does not cite the passage the question was written from "
                                                       f"({', '.join(uncited)}) nor one like it")
    else:
        verdicts["citations"] = CheckOutcome("passed", f"{len(citations)} cited, all retrieved"
                                                       + (", source passage cited" if sources else ""))
    share, missing_words, missing_literals = support(answer or "", [h.text for h in cited])
    if missing_literals:
        verdicts["support"] = CheckOutcome("failed", f"not in the cited passages: {', '.join(missing_literals)}")
    elif share is None:
        verdicts["support"] = CheckOutcome("failed", "the answer states nothing to check (no content words)")
    elif share < support_threshold:
        verdicts["support"] = CheckOutcome("failed", f"{share:.0%} of the answer's content words are in the cited "
                                                     f"passages (needs {support_threshold:.0%}); missing: "
                                                     f"{', '.join(missing_words[:10])}")
    else:
        verdicts["support"] = CheckOutcome("passed",
                                           f"{share:.0%} of the answer's content words are in the cited passages")
    return verdicts
