"""The rows every family's `to_rows` builds the same way: a sample with stable ids, and its verdicts.

A sample's id derives from (run, seed, key) and its group is its seed's, so a rerun writes the same ids and the
store's primary keys make it a no-op. A computed check scores 1 when passed, 0 when failed and nothing when it
could not be checked; a critic's verdict carries the critic's own score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synthgraph.store.rows import CheckOutcome, SampleRow, SampleStatus, VerdictRow, stable_id

__all__ = ["check_rows", "critic_row", "sample_row", "unjudged_row"]


def sample_row(run_id: str, seed_id: str, key: str, *, kind: str, status: SampleStatus, reason: str | None = None,
               score: float | None = None, payload: dict[str, Any]) -> SampleRow:
    """Sample `key` (an attempt's key, or what failed before any attempt: "problem", "request", ...) of a seed."""
    return SampleRow(sample_id=stable_id(run_id, seed_id, key), run_id=run_id, seed_id=seed_id,
                     group_id=stable_id(run_id, seed_id), kind=kind, status=status, reason=reason, score=score,
                     payload=payload)


def check_rows(sample_id: str, checks: Mapping[str, CheckOutcome]) -> list[VerdictRow]:
    """One verdict per computed check (verifier name -> outcome), in the checks' order."""
    return [VerdictRow(sample_id=sample_id, verifier=verifier, outcome=outcome, detail=detail,
                       score={"passed": 1.0, "failed": 0.0}.get(outcome))
            for verifier, (outcome, detail) in checks.items()]


def critic_row(sample_id: str, *, score: float, passed: bool, detail: str, verifier: str = "critic",
               turn: int | None = None) -> VerdictRow:
    """A critic's verdict: `passed` is the family's accept rule applied to it."""
    return VerdictRow(sample_id=sample_id, verifier=verifier, turn=turn, outcome="passed" if passed else "failed",
                      score=score, detail=detail)


def unjudged_row(sample_id: str, error: str, *, verifier: str = "critic", turn: int | None = None) -> VerdictRow:
    """A critic asked for a verdict that gave none usable: could not be checked, with why."""
    return VerdictRow(sample_id=sample_id, verifier=verifier, turn=turn, outcome="unchecked", detail=error)
