"""Sandbox throughput: how many `print(1)` runs per second, and what one run costs.

Prints figures, asserts nothing:
  (a) a bare `python -I -B -c 'print(1)'` subprocess, the floor any sandboxed run stands on;
  (b) sandboxed runs one after another: runs/s and per-run latency (p50 / p95 / max);
  (c) sandboxed runs with N in flight at once (asyncio), for each N given.

    .venv/bin/python bench/sandbox_runs.py
    .venv/bin/python bench/sandbox_runs.py --runs 200 --concurrency 2 4 8 16
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from synthgraph.tools.sandbox import arun_python, ensure_sandbox

PROGRAM = "print(1)"


def describe(label: str, latencies: list[float], wall_s: float) -> None:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"{label:<34} {len(latencies) / wall_s:7.1f} runs/s   latency p50 {1000 * statistics.median(ordered):6.1f} ms"
          f"   p95 {1000 * p95:6.1f} ms   max {1000 * ordered[-1]:6.1f} ms")


def bare_interpreter(runs: int) -> None:
    latencies = []
    started = time.perf_counter()
    for _ in range(runs):
        begun = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-B", "-c", PROGRAM], check=True, capture_output=True)
        latencies.append(time.perf_counter() - begun)
    describe("bare python -I -B (no sandbox)", latencies, time.perf_counter() - started)


async def sandboxed(runs: int, in_flight: int) -> None:
    latencies = []
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            begun = time.perf_counter()
            result = await arun_python(PROGRAM)
            latencies.append(time.perf_counter() - begun)
        if result.stdout != "1\n":
            raise RuntimeError(f"sandboxed print(1) went wrong: {result}")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    label = "sandbox, sequential" if in_flight == 1 else f"sandbox, {in_flight} in flight"
    describe(label, latencies, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="runs per measurement (default 100)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 4, 8], help="runs in flight (default 2 4 8)")
    args = parser.parse_args()

    started = time.perf_counter()
    isolation = ensure_sandbox()  # the one-time probe, timed apart from the runs
    print(f"isolation: {isolation}; first-use probe {1000 * (time.perf_counter() - started):.0f} ms; "
          f"{args.runs} runs of {PROGRAM!r} per line")
    bare_interpreter(args.runs)
    for in_flight in [1, *args.concurrency]:
        asyncio.run(sandboxed(args.runs, in_flight))


if __name__ == "__main__":
    main()
