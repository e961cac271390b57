"""Final-answer extraction and math-verify equivalence (tools/math_answers.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from synthgraph.tools import math_answers
from synthgraph.tools.math_answers import AnswerCheck, answers_match, check_answer, extract_final_answer

# Generous: a pathological check is cut off after its timeout_s (1 s here), plus starting a fresh helper.
BOUNDED_S = 20.0


# ---- extraction ----------------------------------------------------------------------------------------

def test_gsm8k_marker_gives_the_answer():
    solution = "Natalia sold 48 / 2 = 24 clips in May.\nAltogether she sold 48 + 24 = 72 clips.\n#### 72"
    assert extract_final_answer(solution) == "72"


def test_last_boxed_answer_wins_and_keeps_nested_braces():
    solution = r"A first guess is \boxed{1}. Correcting it, $x = \boxed{\frac{\sqrt{2}}{2}}$."
    assert extract_final_answer(solution) == r"\frac{\sqrt{2}}{2}"


def test_boxed_set_keeps_its_escaped_braces():
    assert extract_final_answer(r"The roots form \boxed{\{1, 2\}}.") == r"\{1, 2\}"


def test_unclosed_boxed_falls_back_to_the_previous_one():
    assert extract_final_answer(r"So \boxed{3}. Double-check: \boxed{3") == "3"


@pytest.mark.parametrize("solution", [
    "Adding up, the answer is 18.",
    "Final answer: 18",
    "**Answer:** 18",
    "The final answer is $18$. I hope it is correct.",
    "So the answer is: $18$",
])
def test_closing_answer_sentence_gives_the_answer(solution):
    assert extract_final_answer(solution) == "18"


def test_explicit_marker_beats_an_answer_sentence():
    assert extract_final_answer("I think the answer is 17.\nNo: 3 * 6 = 18.\n#### 18") == "18"
    assert extract_final_answer("#### 18\nThe answer is easy to check.") == "18"


def test_boxed_inside_an_answer_sentence_gives_its_content():
    assert extract_final_answer(r"The final answer is $\boxed{5}$. I hope it is correct.") == "5"


@pytest.mark.parametrize(("solution", "answer"), [
    ("#### 1,000", "1000"),
    ("#### 1,234,567", "1234567"),
    ("#### $1,234.50", "1234.50"),
    (r"#### \$18", "18"),
    ("#### -$5", "-5"),
    ("#### 50%", "50%"),
])
def test_gsm8k_numbers_lose_thousands_commas_and_currency(solution, answer):
    assert extract_final_answer(solution) == answer


@pytest.mark.parametrize(("solution", "answer"), [
    ("#### 18 apples", "18"),
    ("The answer is 12 km/h.", "12"),
    ("#### $18 dollars.", "18"),
])
def test_unit_words_after_a_number_are_dropped(solution, answer):
    assert extract_final_answer(solution) == answer


@pytest.mark.parametrize("answer", ["5 or 6", "2 pi", "x = 5", "5!", "(1, 2)"])
def test_answers_that_only_look_like_a_number_with_units_are_kept(answer):
    assert extract_final_answer(f"#### {answer}") == answer


@pytest.mark.parametrize("solution", ["", "We get 5 in the end.", r"so \boxed{", "####   \n"])
def test_solution_without_a_final_answer_gives_none(solution):
    assert extract_final_answer(solution) is None


# ---- equivalence ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("candidate", "reference"), [
    ("#### 0.5", r"\frac{1}{2}"),
    (r"\boxed{\frac{1}{2}}", "0.5"),
    ("#### 1/2", "0.5"),
    (r"\boxed{\dfrac{1}{2}}", "1/2"),
    (r"The answer is $\sqrt{18}$.", r"3\sqrt{2}"),
    ("#### 18.0", "18"),
    ("The answer is $x = 5$.", "5"),
    ("#### 1,000", "1000"),
    ("#### 50%", "0.5"),
    ("#### 50%", "50"),
    ("#### $18", "18"),
    ("#### 18 apples", "18"),
    ("#### 2^{10}", "1024"),
    (r"\boxed{\{2, 1\}}", r"\{1, 2\}"),
    ("#### 5!", "120"),
])
def test_equivalent_forms_match(candidate, reference):
    check = check_answer(candidate, reference)
    assert check.outcome == "match", check.reason


@pytest.mark.parametrize(("candidate", "reference"), [
    ("#### 17", "18"),
    (r"\boxed{\frac{1}{3}}", "0.5"),
    (r"#### 3\sqrt{2}", r"\sqrt{17}"),
    ("#### 10^{100}", "10^{100}+1"),
    ("#### -18", "18"),
])
def test_different_answers_mismatch(candidate, reference):
    check = check_answer(candidate, reference)
    assert check.outcome == "mismatch", check.reason


def test_a_check_reports_the_extracted_answer_and_why():
    check = check_answer("3 * 6 = 18 apples.\n#### 18 apples", "17")
    assert check == AnswerCheck(outcome="mismatch", extracted="18", reason=check.reason)
    assert "18" in check.reason and "17" in check.reason


def test_missing_final_answer_is_unparseable_not_a_mismatch():
    check = check_answer("Let me think about it: 3 * 6 = 18.", "18")
    assert check.outcome == "unparseable"
    assert check.extracted is None
    assert "no final answer" in check.reason


@pytest.mark.parametrize("reference", [r"\frac{1}{", "???", ""])
def test_garbage_reference_is_unparseable(reference):
    check = check_answer("#### 18", reference)
    assert check.outcome == "unparseable"
    assert "reference" in check.reason


def test_garbage_final_answer_is_unparseable():
    check = check_answer(r"\boxed{\sqrt{}{}}", "18")
    assert check.outcome == "unparseable"
    assert check.extracted == r"\sqrt{}{}"


def test_reference_with_its_own_marker_is_read_like_a_solution():
    assert answers_match("#### 18", r"6 \cdot 3 = 18, so the answer is \boxed{18}.")


@pytest.mark.parametrize(("candidate", "reference"), [("#### 0.5", "1/2"), ("#### 17", "18"), ("no answer", "18")])
def test_answers_match_agrees_with_check_answer(candidate, reference):
    assert answers_match(candidate, reference) == (check_answer(candidate, reference).outcome == "match")


# ---- threads and bounds --------------------------------------------------------------------------------

def test_checks_run_from_worker_threads():
    # math-verify's own timeouts raise ValueError off the main thread; graph nodes call from asyncio.to_thread.
    pairs = [("#### 0.5", r"\frac{1}{2}"), ("#### 17", "18"), ("nothing", "1"), (r"\boxed{\sqrt{18}}", r"3\sqrt{2}")] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda pair: check_answer(*pair).outcome, pairs))
    assert outcomes == ["match", "mismatch", "unparseable", "match"] * 3


def test_huge_exponent_is_cut_off_as_unparseable():
    started = time.monotonic()
    check = check_answer(r"#### 9^{9^{9^{9}}}", "18", timeout_s=1)
    assert time.monotonic() - started < BOUNDED_S
    assert check.outcome == "unparseable"
    assert "longer than 1 s" in check.reason
    assert check.extracted == "9^{9^{9^{9}}}"


def test_very_long_answer_returns_in_bounded_time():
    started = time.monotonic()
    check = check_answer("#### " + "1+" * 100_000 + "1", "100001", timeout_s=1)
    assert time.monotonic() - started < BOUNDED_S
    assert check.outcome in {"match", "unparseable"}
    assert len(check.reason) < 1_000


def test_checks_after_a_timeout_still_work():
    assert check_answer(r"#### 10^{10^{10}}", "1", timeout_s=1).outcome == "unparseable"
    assert answers_match("#### 0.5", r"\frac{1}{2}")


@pytest.mark.parametrize(("candidate", "reference"), [
    ("42", "42"), ("042", "42"), ("-0", "0"), ("+5", "5"), ("41", "42"), ("-18", "18"),
    ("123456789012345", "123456789012345"), ("123456789012345", "123456789012344"),
])
def test_plain_integers_are_compared_in_process_as_math_verify_would(candidate, reference):
    in_process = math_answers._compare_integers(candidate, reference)
    assert in_process is not None
    assert in_process == math_answers._compare(candidate, reference)


@pytest.mark.parametrize(("candidate", "reference"), [
    ("1234567890123456", "1234567890123456"),  # past math-verify's 15 significant digits: its own rules apply
    ("42.0", "42"), ("1/2", "0.5"), ("x", "1"), ("42", "42%"),
])
def test_everything_but_short_plain_integers_goes_to_math_verify(candidate, reference):
    assert math_answers._compare_integers(candidate, reference) is None
