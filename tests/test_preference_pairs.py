"""The preference_pairs view: which samples pair, with which margin, and one pair per (chosen, rejected) rule."""

from __future__ import annotations

from pathlib import Path

from readback import rows
from typer.testing import CliRunner

from synthgraph.graphs.cli import app
from synthgraph.store.db import Store
from synthgraph.store.pairs import load_pairs, pair_counts
from synthgraph.store.rows import MessageRow, SampleRow, SeedOutcome, VerdictRow


def sample(sid: str, kind: str, status: str, *, group="g1", score=None, reason=None, payload=None, reply=None,
           prompt="What is 2+2?") -> tuple[SampleRow, list[MessageRow]]:
    row = SampleRow(sample_id=sid, run_id="r1", seed_id=group, group_id=group, kind=kind, status=status,
                    reason=reason, score=score, payload=payload or {})
    turns = [MessageRow(sample_id=sid, turn=0, role="user", content=prompt)]
    if reply is not False:
        turns.append(MessageRow(sample_id=sid, turn=1, role="assistant", content=reply or f"reply {sid}"))
    return row, turns


def write(db: Path, items, verdicts=()) -> None:
    store = Store(db)
    try:
        store.write_outcomes([SeedOutcome(run_id="r1", seed_id="s", status="done",
                                          samples=[s for s, _ in items], messages=[m for _, ms in items for m in ms],
                                          verdicts=list(verdicts))])
    finally:
        store.close()


def failed(sid: str, verifier="math_verify") -> VerdictRow:
    return VerdictRow(sample_id=sid, verifier=verifier, outcome="failed", detail="wrong")


def unchecked(sid: str) -> VerdictRow:
    return VerdictRow(sample_id=sid, verifier="math_verify", outcome="unchecked", detail="no answer")


def test_each_failed_attempt_pairs_with_the_best_accepted_sibling(tmp_path):
    db = tmp_path / "s.duckdb"
    write(db, [
        sample("a_good", "reasoning_trace", "accepted", score=7),
        sample("a_best", "reasoning_trace", "accepted", score=9),
        sample("r_wrong", "reasoning_trace", "rejected", reason="wrong answer: 5"),
        sample("r_weak", "reasoning_trace", "rejected", score=3, reason="critic score 3 < 6"),
        sample("r_unparsed", "reasoning_trace", "rejected", reason="answer could not be checked"),
        sample("problem", "reasoning_problem", "rejected", reason="reference program failed"),
        sample("other_wrong", "reasoning_trace", "rejected", group="g2", reason="wrong answer: 1"),
    ], [failed("r_wrong"), failed("r_weak", "critic"), unchecked("r_unparsed"), failed("problem", "reference_program"),
        failed("other_wrong")])
    got = rows(db, "SELECT chosen_sample_id, rejected_sample_id, source, margin, reason FROM preference_pairs ORDER BY 2")
    assert got == [("a_best", "r_weak", "verified", 6.0, "critic score 3 < 6"),
                   ("a_best", "r_wrong", "verified", None, "wrong answer: 5")]
    pair = load_pairs(db)[0]
    assert pair["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert pair["chosen"] == [{"role": "assistant", "content": "reply a_best"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "reply r_weak"}]


def test_equal_scores_pick_one_chosen_by_sample_id(tmp_path):
    db = tmp_path / "s.duckdb"
    write(db, [sample("b", "code_solution", "accepted", score=8), sample("a", "code_solution", "accepted", score=8),
               sample("x", "code_solution", "rejected", reason="tests failed")], [failed("x", "tests")])
    assert rows(db, "SELECT chosen_sample_id, rejected_sample_id FROM preference_pairs") == [("a", "x")]


def test_tool_trajectory_prompt_ends_before_the_first_assistant_turn(tmp_path):
    db = tmp_path / "s.duckdb"
    calls = [{"id": "c0", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]
    good, good_turns = sample("good", "tool_trajectory", "accepted", score=8, reply=False,
                              payload={"tools": [{"type": "function", "function": {"name": "add"}}]})
    good_turns += [MessageRow(sample_id="good", turn=1, role="assistant", content=None, tool_calls=calls),
                   MessageRow(sample_id="good", turn=2, role="tool", content="3", tool_call_id="c0", name="add"),
                   MessageRow(sample_id="good", turn=3, role="assistant", content="It is 3.")]
    write(db, [(good, good_turns), sample("bad", "tool_trajectory", "rejected", reason="format: extra argument")],
          [failed("bad", "format")])
    (pair,) = load_pairs(db)
    assert pair["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert [m["role"] for m in pair["chosen"]] == ["assistant", "tool", "assistant"]
    assert pair["chosen"][0]["tool_calls"] == calls
    assert pair["tools"] == [{"type": "function", "function": {"name": "add"}}]


def judged(sid: str, score: float, status: str, margin: float = 2.0, group="p1"):
    return sample(sid, "judged_response", status, score=score, group=group, payload={"min_margin": margin},
                  reason=None if status == "accepted" else f"rated {score}")


def test_judged_pairs_keep_only_lower_responses_past_the_margin(tmp_path):
    db = tmp_path / "s.duckdb"
    write(db, [judged("best", 8.5, "accepted"), judged("tied", 8.5, "rejected"), judged("close", 7.0, "rejected"),
               judged("low", 6.5, "rejected"), judged("worst", 2.0, "rejected"),
               # a prompt whose best response fell below the recipe's floor has no chosen, so no pairs
               judged("weak_best", 4.0, "rejected", group="p2"), judged("weaker", 1.0, "rejected", group="p2")])
    got = rows(db, "SELECT rejected_sample_id, margin FROM preference_pairs WHERE source = 'judged' ORDER BY 2")
    assert got == [("low", 2.0), ("worst", 6.5)]


def test_revision_pairs_only_when_the_revision_was_judged_better(tmp_path):
    db = tmp_path / "s.duckdb"
    payload = {"min_margin": 1.0}
    write(db, [
        sample("rev1", "revised_response", "accepted", score=8, group="q1", payload=payload),
        sample("orig1", "original_response", "rejected", score=5, group="q1", payload=payload, reason="revised"),
        # the revision was no better: the original stays the answer and no pair is made from the worse revision
        sample("rev2", "revised_response", "rejected", score=4, group="q2", payload=payload, reason="no better"),
        sample("orig2", "original_response", "accepted", score=6, group="q2", payload=payload),
    ])
    assert rows(db, "SELECT source, chosen_sample_id, rejected_sample_id, margin FROM preference_pairs") == [
        ("critique_revision", "rev1", "orig1", 3.0)]


def test_a_sample_rejected_by_cleaning_is_never_the_rejected_side(tmp_path):
    db = tmp_path / "s.duckdb"
    write(db, [
        sample("kept", "reasoning_trace", "accepted", score=8),
        # the same answer as its accepted sibling: paired, it would be chosen and rejected at once
        sample("copy", "reasoning_trace", "rejected", reply="reply kept", reason="dedup: exact-duplicate of kept"),
        sample("leak", "reasoning_trace", "rejected", reason="decontamination: overlaps humaneval"),
        sample("wrong", "reasoning_trace", "rejected", reason="wrong answer: 5"),
        judged("best", 8.5, "accepted"), judged("copied", 3.0, "rejected"),
    ], [failed("copy", "dedup"), failed("leak", "decontamination"), failed("wrong"), failed("copied", "dedup")])
    assert rows(db, "SELECT source, chosen_sample_id, rejected_sample_id FROM preference_pairs") == [
        ("verified", "kept", "wrong")]


def test_pairs_command_counts_per_source(tmp_path):
    db = tmp_path / "s.duckdb"
    write(db, [judged("best", 9, "accepted"), judged("worst", 2, "rejected"),
               sample("a", "code_solution", "accepted", score=8, group="c"),
               sample("x", "code_solution", "rejected", group="c", reason="tests failed")], [failed("x", "tests")])
    assert pair_counts(db)[1] == [("judged", 1, 1, 1, 7.0, 7.0), ("verified", 1, 1, 1, None, None)]
    result = CliRunner().invoke(app, ["pairs", "--db", str(db)])
    assert result.exit_code == 0 and "judged" in result.output and "verified" in result.output
    unknown = CliRunner().invoke(app, ["pairs", "--db", str(db), "--run", "nope"])
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.output
    lonely = tmp_path / "lonely.duckdb"
    write(lonely, [sample("a", "code_solution", "accepted", score=8)])
    empty = CliRunner().invoke(app, ["pairs", "--db", str(lonely)])
    assert empty.exit_code == 0 and "no preference pairs: a pair needs" in " ".join(empty.output.split())
