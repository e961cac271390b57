"""Kill and resume: SIGKILL a dialogue run (fake model answering in 50 ms, 12 seeds, 4 in flight) at random
moments, rerun it to the end, and count what was lost, duplicated and redone — with and without the runner's
mid-seed checkpoints. (With calls much faster than a checkpoint write, ~2 ms, the checkpoints lag behind.)

Prints figures, asserts nothing. "redone" is model calls that had completed before the kill and were made again
after it (the killed run's calls + the rerun's - a clean run's); "differ" is dialogues that are not the ones a
clean run stores (the fake model is deterministic).

    .venv/bin/python bench/kill_resume.py
    .venv/bin/python bench/kill_resume.py --kills 8 --seed 3
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_kill_resume import killed_and_resumed, run_dialogues  # noqa: E402  (the test's child process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        clean, _ = run_dialogues(tmp / "clean.duckdb", checkpoints=True)
        print(f"clean run: {clean} model calls for 12 dialogues")
        rng = random.Random(args.seed)
        moments = sorted(rng.randrange(1, clean) for _ in range(args.kills))
        print(f"{'kill after':>10} {'checkpoints':>11} {'lost':>5} {'duplicated':>10} {'differ':>6} "
              f"{'redone calls':>12} {'seeds resumed':>13}")
        totals = {True: 0, False: 0}
        for moment in moments:
            for checkpoints in (False, True):
                outcome = killed_and_resumed(tmp, checkpoints, moment, clean, tmp / "clean.duckdb")
                totals[checkpoints] += outcome["redone"]
                print(f"{moment:>10} {'on' if checkpoints else 'off':>11} {outcome['lost']:>5} "
                      f"{outcome['duplicated']:>10} {outcome['differ']:>6} {outcome['redone']:>12} "
                      f"{outcome['resumed'] if checkpoints else '-':>13}")
        print(f"calls redone per kill, mean: {totals[False] / len(moments):.1f} without checkpoints, "
              f"{totals[True] / len(moments):.1f} with")


if __name__ == "__main__":
    main()
