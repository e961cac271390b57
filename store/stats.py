"""Per-run statistics: yield, verdict mix, token totals, latency per role."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synthgraph.store.db import connect

_SECTIONS = {
    "yield per run": """
        SELECT run_id, name, graph, seeds_done, seeds_crashed, samples, accepted, rejected, errors, yield
        FROM run_stats WHERE $run_id IS NULL OR run_id = $run_id ORDER BY created_at""",
    "verdict mix": """
        SELECT s.run_id, v.verifier, v.outcome, count(*) AS n, round(avg(v.score), 2) AS mean_score
        FROM verdicts v JOIN samples s USING (sample_id)
        WHERE $run_id IS NULL OR s.run_id = $run_id
        GROUP BY ALL ORDER BY 1, 2, 3""",
    "model calls per role": """
        SELECT run_id, role, count(*) AS calls, count(*) FILTER (WHERE error IS NOT NULL) AS refused,
               sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
               round(avg(latency_s), 2) AS mean_latency_s, round(avg(completion_tokens), 1) AS mean_completion
        FROM agent_calls WHERE $run_id IS NULL OR run_id = $run_id
        GROUP BY ALL ORDER BY 1, 2""",
}


def run_statistics(db: Path, *, run_id: str | None = None, notice: Callable[[str], None] | None = None
                   ) -> dict[str, tuple[list[str], list[tuple]]]:
    """{section title: (columns, rows)}; empty when the store has no runs."""
    con = connect(Path(db), read_only=True, notice=notice)
    try:
        if con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0:
            return {}
        report = {}
        for title, sql in _SECTIONS.items():
            cursor = con.execute(sql, {"run_id": run_id})
            report[title] = ([d[0] for d in cursor.description], cursor.fetchall())
        return report
    finally:
        con.close()
