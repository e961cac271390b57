"""What the cleaning checks (deduplication, benchmark decontamination) read from the store and write back.

A finding is a failed verdict of verifier `dedup` or `decontamination` on the sample; a sample that has one and is
still accepted is *flagged* (exports can leave flagged samples out). Rejecting keeps the sample and its turns:
only its status and reason change, and the verdict says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import duckdb

from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, VerdictRow

CLEANING_VERIFIERS = ("dedup", "decontamination")
TextPart = Literal["user", "assistant", "conversation"]
TEXT_ROLES: dict[str, tuple[str, ...]] = {
    "user": ("user",), "assistant": ("assistant",),
    "conversation": ("user", "assistant"),  # system prompts and tool results are shared boilerplate, left out
}

FLAGGED_SAMPLES = ("SELECT sample_id FROM verdicts WHERE verifier IN ('dedup', 'decontamination') "
                   "AND outcome = 'failed'")


def sample_text(messages: Iterable[MessageRow], part: TextPart) -> str:
    """The text of one sample that a check reads: its `part` turns in order (the same as `stored_texts`)."""
    roles = TEXT_ROLES[part]
    return "\n".join(m.content for m in sorted(messages, key=lambda m: m.turn) if m.role in roles and m.content)


@dataclass(frozen=True)
class StoredText:
    sample_id: str
    run_id: str
    seed_id: str
    group_id: str
    text: str


def stored_texts(con: duckdb.DuckDBPyConnection, part: TextPart, *, run_id: str | None = None,
                 exclude: Sequence[str] = CLEANING_VERIFIERS) -> list[StoredText]:
    """Accepted samples (of one run, or all) without a failed verdict of the `exclude` verifiers, each with its
    `part` text, in the order they were written (then by seed position), so a rerun sees the same order."""
    rows = con.execute(
        """
        SELECT s.sample_id, s.run_id, s.seed_id, s.group_id,
               coalesce(string_agg(m.content, chr(10) ORDER BY m.turn)
                        FILTER (WHERE list_contains($roles, m.role) AND m.content <> ''), '') AS text
        FROM samples s
        LEFT JOIN messages m USING (sample_id)
        LEFT JOIN seeds x ON x.run_id = s.run_id AND x.seed_id = s.seed_id
        WHERE s.status = 'accepted' AND ($run_id IS NULL OR s.run_id = $run_id)
          AND s.sample_id NOT IN (SELECT sample_id FROM verdicts WHERE list_contains($exclude, verifier)
                                  AND outcome = 'failed')
        GROUP BY s.sample_id, s.run_id, s.seed_id, s.group_id, s.created_at, x.position
        ORDER BY s.created_at, s.run_id, x.position, s.sample_id
        """,
        {"roles": list(TEXT_ROLES[part]), "run_id": run_id, "exclude": list(exclude)},
    ).fetchall()
    return [StoredText(*row) for row in rows]


def reject_flagged(store: Store, verifier: str, *, run_id: str | None = None) -> int:
    """Reject the accepted samples (of one run, or all) that carry a failed `verifier` verdict, however it got
    there: this pass, an earlier `--action flag` pass, or a run whose recipe flags. The verdict's detail becomes
    the reason. Returns how many samples were rejected."""
    with store.transaction():
        (rejected,) = store.con.execute(
            """
            UPDATE samples SET status = 'rejected',
                   reason = $verifier || ': ' || (SELECT min(v.detail) FROM verdicts v
                                                  WHERE v.sample_id = samples.sample_id
                                                    AND v.verifier = $verifier AND v.outcome = 'failed')
            WHERE status = 'accepted' AND ($run_id IS NULL OR run_id = $run_id)
              AND sample_id IN (SELECT sample_id FROM verdicts WHERE verifier = $verifier AND outcome = 'failed')
            """, {"verifier": verifier, "run_id": run_id}).fetchone()
    return rejected


def record_findings(store: Store, verdicts: Sequence[VerdictRow]) -> int:
    """Write failed cleaning verdicts (a verdict already there is left alone, so a rerun is a no-op); returns how
    many were new. `reject_flagged` then rejects the samples they name, if asked."""
    if not verdicts:
        return 0
    with store.transaction():
        before = store.con.execute("SELECT count(*) FROM verdicts").fetchone()[0]
        store.con.executemany(
            "INSERT INTO verdicts (verdict_id, sample_id, verifier, turn, outcome, passed, score, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [[v.verdict_id, v.sample_id, v.verifier, v.turn, v.outcome, v.passed, v.score, v.detail] for v in verdicts],
        )
        return store.con.execute("SELECT count(*) FROM verdicts").fetchone()[0] - before
