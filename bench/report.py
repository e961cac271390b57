"""Run report: time to write the HTML report of a store of N synthetic samples, and the file's size.

Prints figures, asserts nothing. The store is filled through the store's own writer (`Store.write_outcomes`)
with rows shaped like a reasoning run: per seed a proposer call, k solver attempts (a user problem of ~40-80
words, an answer of ~80-400 words drawn from the Python language reference's vocabulary), math_verify on every
attempt, a critic call and score on the verified ones, calls spread over a two-hour run. Then `write_report`
runs with the default sample table (500 samples; cold, then warm) and with every sample in the table.

    .venv/bin/python bench/report.py
    .venv/bin/python bench/report.py --samples 10000 --k 4 --db /tmp/bench-report.duckdb   # keep and reuse the store
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydoc_data.topics import topics

from synthgraph.store.db import Store
from synthgraph.store.report import write_report
from synthgraph.store.rows import AgentCallRow, MessageRow, RunRow, SampleRow, SeedOutcome, SeedRow, VerdictRow

RUN_ID = "bench-report"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def seed_outcome(rng: random.Random, vocabulary: list[str], seed_index: int, k: int, run_s: float) -> SeedOutcome:
    seed_id = f"seed-{seed_index:06d}"
    words = lambda lo, hi: " ".join(rng.choices(vocabulary, k=rng.randint(lo, hi)))  # noqa: E731
    problem = words(40, 80) + "?"
    at = rng.uniform(0, run_s)
    outcome = SeedOutcome(run_id=RUN_ID, seed_id=seed_id, status="done")

    def call(role: str, sample_id: str | None, completion: str, latency: float) -> AgentCallRow:
        nonlocal at
        row = AgentCallRow(
            call_id=f"{seed_id}-{role}-{len(outcome.agent_calls)}", run_id=RUN_ID, seed_id=seed_id,
            sample_id=sample_id, role=role, node=role, model="vllm:qwen2.5-coder-0.5b", prompt_hash=f"{rng.random()}",
            prompt=[{"role": "system", "content": words(60, 120)}, {"role": "user", "content": problem}],
            completion=completion, prompt_tokens=rng.randint(150, 400), completion_tokens=len(completion.split()) * 4 // 3,
            latency_s=latency, finish_reason="stop", sampling={"temperature": 0.6, "max_tokens": 640},
            error="malformed structured output" if rng.random() < 0.03 else None,
            started_at=T0 + timedelta(seconds=at))
        at += latency
        return row

    outcome.agent_calls.append(call("proposer", None, problem, rng.uniform(3, 12)))
    for attempt in range(k):
        sample_id = f"{seed_id}-a{attempt}"
        answer = words(80, 400) + f"\n#### {rng.randint(0, 999)}"
        verified = rng.random() < 0.6
        score = rng.randint(2, 10) if verified else None
        status = "accepted" if verified and score >= 6 else "rejected"
        reason = None if status == "accepted" else (
            f"critic score {score} < 6: {words(8, 20)}" if verified else "answer does not match the reference")
        outcome.samples.append(SampleRow(
            sample_id=sample_id, run_id=RUN_ID, seed_id=seed_id, group_id=seed_id, kind="reasoning_trace",
            status=status, reason=reason, score=score,
            payload={"problem": problem, "reference": "42", "program": words(20, 60), "attempt": attempt}))
        outcome.messages += [MessageRow(sample_id=sample_id, turn=0, role="user", content=problem),
                             MessageRow(sample_id=sample_id, turn=1, role="assistant", content=answer)]
        outcome.verdicts.append(VerdictRow(sample_id=sample_id, verifier="math_verify",
                                           outcome="passed" if verified else "failed", score=float(verified),
                                           detail="answers match" if verified else "42 != 41"))
        outcome.agent_calls.append(call("solver", sample_id, answer, rng.uniform(5, 40)))
        if verified:
            outcome.verdicts.append(VerdictRow(sample_id=sample_id, verifier="critic", score=score,
                                               outcome="passed" if score >= 6 else "failed", detail=words(10, 40)))
            outcome.agent_calls.append(call("critic", sample_id, words(10, 40), rng.uniform(2, 8)))
    return outcome


def build_store(db: Path, samples: int, k: int, run_s: float) -> None:
    rng = random.Random(0)
    vocabulary = sorted({w for text in topics.values() for w in re.findall(r"[A-Za-z]{2,}", text)})
    seeds = samples // k
    store = Store(db)
    try:
        store.register_run(RunRow(run_id=RUN_ID, name="bench-report", graph="reasoning", recipe={}),
                           [SeedRow(run_id=RUN_ID, seed_id=f"seed-{i:06d}", position=i, payload={}) for i in range(seeds)])
        batch = []
        for i in range(seeds):
            batch.append(seed_outcome(rng, vocabulary, i, k, run_s))
            if len(batch) == 64:  # the runner's writer batch size
                store.write_outcomes(batch)
                batch = []
        store.write_outcomes(batch)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=4, help="attempts per seed")
    parser.add_argument("--run-hours", type=float, default=2.0)
    parser.add_argument("--db", type=Path, help="keep the store here, and reuse it if it is already there")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.duckdb"
        if db.exists():
            print(f"store: reusing {db}")
        else:
            t = time.perf_counter()
            build_store(db, args.samples, args.k, args.run_hours * 3600)
            print(f"store: {args.samples} samples ({args.samples // args.k} seeds × {args.k}) written in "
                  f"{time.perf_counter() - t:.1f} s, {db.stat().st_size / 1e6:.1f} MB")
        # The first call pays for importing plotly and compiling the template, as `synthgraph report` does.
        for label, shown in (("first call", 500), ("again", 500), ("every sample", args.samples)):
            summary = write_report(db, Path(tmp) / f"report-{label}.html", max_samples=shown)
            print(f"write_report ({label:>12}), {summary.samples_shown:>6} samples in the table: "
                  f"{summary.seconds:6.2f} s, {summary.html_bytes / 1e6:6.1f} MB HTML, {len(summary.figures)} plots")


if __name__ == "__main__":
    main()
