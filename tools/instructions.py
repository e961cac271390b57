"""Checks of generated instructions (Self-Instruct's filters): well-formed, and novel against a growing pool.

Novelty is ROUGE-L F1 against every instruction already in the pool, as in Self-Instruct (Wang et al., 2023: a new
instruction is kept only when its ROUGE-L with every existing one is below 0.7). `similarity` is the one measure the
pool uses, so another (MinHash over shingles) can replace it in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rouge_score import rouge_scorer

# Self-Instruct drops tasks a text-only model cannot do, by these words, and instructions that start with
# punctuation or a non-ASCII character (a half-cut or garbled line).
UNSUITABLE_WORDS = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram")
_UNSUITABLE = re.compile(r"\b(" + "|".join(re.escape(w) for w in UNSUITABLE_WORDS) + r")\b", re.I)

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def similarity(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts (0: nothing in common, 1: the same words in the same order)."""
    return _SCORER.score(a, b)["rougeL"].fmeasure


def instruction_problem(text: str, *, min_words: int = 3, max_words: int = 150) -> str | None:
    """What makes a generated instruction unusable, or None."""
    words = text.split()
    if len(words) < min_words:
        return f"too short ({len(words)} words < {min_words})"
    if len(words) > max_words:
        return f"too long ({len(words)} words > {max_words})"
    if not text[0].isascii() or not text[0].isalnum():
        return f"starts with {text[0]!r}"
    if match := _UNSUITABLE.search(text):
        return f"asks for something a text model cannot do ({match.group(0)!r})"
    return None


@dataclass(frozen=True)
class NoveltyCheck:
    novel: bool
    similarity: float          # the highest similarity to an instruction already in the pool
    nearest: str | None        # that instruction


class InstructionPool:
    """The instructions a run has seen: the seed tasks, the kept instructions already in the store, and those kept
    in this process. `admit` checks and adds in one step, so concurrent graph instances on one event loop never
    both keep two near-copies."""

    def __init__(self, instructions: list[str], *, max_similarity: float):
        self.instructions = list(dict.fromkeys(instructions))
        self.max_similarity = max_similarity

    def __len__(self) -> int:
        return len(self.instructions)

    def nearest(self, text: str) -> tuple[float, str | None]:
        best, nearest = 0.0, None
        for known in self.instructions:
            score = similarity(text, known)
            if score > best:
                best, nearest = score, known
        return best, nearest

    def admit(self, text: str) -> NoveltyCheck:
        score, nearest = self.nearest(text)
        novel = score < self.max_similarity
        if novel:
            self.instructions.append(text)
        return NoveltyCheck(novel=novel, similarity=round(score, 4), nearest=nearest)
