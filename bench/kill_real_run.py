"""SIGKILL a real run at random moments, then finish it: samples lost or duplicated, engine processes left, and
memory left in use after each kill.

Each round starts `synthgraph run RECIPE` on the embedded model (a subprocess, as a user starts it), kills the
whole command with SIGKILL at a random moment (model load, generation, writing), waits a few seconds and looks for
vLLM engine processes that outlived it and at the memory in use. After the kills one last run finishes the job;
then the store is checked: every seed done exactly once, no sample id twice, every accepted sample of the killed
rounds still there. Prints figures, asserts nothing.

    python bench/kill_real_run.py                              # demos/reasoning.yaml --limit 6, 5 kills
    python bench/kill_real_run.py --kills 6 --seed 2 --limit 8
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPOSITORY = Path(__file__).resolve().parents[1]
SYNTHGRAPH = Path(sys.executable).with_name("synthgraph")


def engine_processes() -> list[tuple[int, int]]:
    """(pid, resident MB) of every vLLM engine or worker process on the machine."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text().strip()
            if name.startswith("VLLM::") or "EngineCore" in name:
                rss_pages = int((proc / "statm").read_text().split()[1])
                found.append((int(proc.name), rss_pages * os.sysconf("SC_PAGE_SIZE") // 2**20))
        except (OSError, ValueError):
            continue
    return found


def used_mb() -> int:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) // 1024


def store_counts(db: Path) -> tuple[int, int, set[str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        samples, distinct = con.execute("SELECT count(*), count(DISTINCT sample_id) FROM samples").fetchone()
        accepted = {r[0] for r in con.execute("SELECT sample_id FROM samples WHERE status = 'accepted'").fetchall()}
        return samples, distinct, accepted
    except duckdb.Error:  # killed before the schema was written
        return 0, 0, set()
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(REPOSITORY / "demos" / "reasoning.yaml"))
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=float, nargs=2, default=(15.0, 120.0),
                        help="kill between these many seconds after the start")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    baseline = used_mb()
    print(f"memory in use before: {baseline} MB; engine processes before: {len(engine_processes())}")
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "kill.duckdb"
        command = [str(SYNTHGRAPH), "run", args.recipe, "--limit", str(args.limit), "--db", str(db)]
        kept: set[str] = set()
        lost_total = 0
        print(f"{'kill at s':>9} {'samples':>7} {'dupes':>5} {'lost':>4} {'engines left':>12} {'MB left':>7}")
        for _ in range(args.kills):
            moment = rng.uniform(*args.window)
            others = {pid for pid, _ in engine_processes()}  # not this run's: never counted, never killed
            child = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            try:
                child.wait(timeout=moment)
                finished = True
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # the whole command, as `kill -9` of a terminal's job
                child.wait()
                finished = False
            time.sleep(5)
            left = [(pid, mb) for pid, mb in engine_processes() if pid not in others]
            samples, distinct, accepted = store_counts(db)
            lost = len(kept - accepted)
            lost_total += lost
            kept |= accepted
            print(f"{moment:9.1f} {samples:7d} {samples - distinct:5d} {lost:4d} {len(left):12d} "
                  f"{sum(mb for _, mb in left):7d}" + ("   (the run finished before the kill)" if finished else ""))
            for pid, _ in left:  # do not let one round's leftovers skew the next
                os.kill(pid, signal.SIGKILL)
        t0 = time.perf_counter()
        final = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True)
        samples, distinct, accepted = store_counts(db)
        con = duckdb.connect(str(db), read_only=True)
        seeds = con.execute("SELECT status, count(*) FROM seeds GROUP BY 1 ORDER BY 1").fetchall()
        con.close()
        print(f"final run: exit {final.returncode} in {time.perf_counter() - t0:.0f} s; seeds {seeds}; "
              f"{samples} samples, {samples - distinct} duplicated, {len(kept - accepted)} accepted samples of the "
              f"killed rounds missing (lost during the rounds: {lost_total}); {len(accepted)} accepted")
        time.sleep(5)
        print(f"engine processes after: {len(engine_processes())}; memory in use after: {used_mb()} MB "
              f"(before: {baseline} MB)")


if __name__ == "__main__":
    main()
