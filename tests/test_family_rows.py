"""The shared row builders of the families' to_rows (graphs/rows.py)."""

from __future__ import annotations

from synthgraph.graphs.rows import check_rows, critic_row, sample_row, unjudged_row
from synthgraph.store.rows import CheckOutcome, stable_id


def test_a_sample_id_derives_from_run_seed_and_key_and_its_group_is_the_seed():
    first = sample_row("r", "s", "k0", kind="x", status="accepted", payload={})
    again = sample_row("r", "s", "k0", kind="x", status="rejected", reason="changed", payload={"a": 1})
    other = sample_row("r", "s", "k1", kind="x", status="accepted", payload={})
    assert first.sample_id == again.sample_id == stable_id("r", "s", "k0") != other.sample_id
    assert first.group_id == other.group_id == stable_id("r", "s")


def test_check_rows_score_passed_one_failed_zero_and_unchecked_nothing_in_order():
    rows = check_rows("id", {"format": CheckOutcome("passed", "ok"), "execution": CheckOutcome("failed", "boom"),
                             "results_used": CheckOutcome("unchecked", "nothing to see")})
    assert [(v.verifier, v.outcome, v.score, v.detail) for v in rows] == [
        ("format", "passed", 1.0, "ok"), ("execution", "failed", 0.0, "boom"),
        ("results_used", "unchecked", None, "nothing to see")]


def test_critic_rows_carry_the_critics_score_or_why_it_gave_none():
    judged = critic_row("id", score=5.5, passed=False, detail="thin", verifier="turn_critic", turn=3)
    assert (judged.outcome, judged.score, judged.turn, judged.verifier) == ("failed", 5.5, 3, "turn_critic")
    unjudged = unjudged_row("id", "no JSON")
    assert (unjudged.outcome, unjudged.score, unjudged.detail, unjudged.verifier) == ("unchecked", None, "no JSON",
                                                                                         "critic")
