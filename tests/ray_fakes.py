"""A Ray worker on the scripted fake model, for the Ray tests; Ray's worker processes import it from here.

The solver answers "What is N times 7?" correctly. A file `die-N` in the folder named by SYNTHGRAPH_TEST_DIE_DIR
makes the worker that meets seed N first delete the file and SIGKILL its own process: a worker dying mid-seed,
once, however many workers there are.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from fakes import ReasoningScript, ScriptedPool

from synthgraph.graphs.ray_workers import SeedWorker

SEEDS = [{"id": f"gold-{i}", "problem": f"What is {i} times 7?", "answer": str(7 * i)} for i in range(1, 11)]


def solver_reply(messages) -> str:
    number = int(messages[-1].content.split("What is ")[1].split()[0])
    die_dir = os.environ.get("SYNTHGRAPH_TEST_DIE_DIR")
    if die_dir:
        order = Path(die_dir) / f"die-{number}"
        try:
            order.unlink()
        except FileNotFoundError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)  # seeds stay in flight long enough to be lost with their worker
    return f"{number} times 7 is {7 * number}.\n#### {7 * number}"


def script() -> ReasoningScript:
    return ReasoningScript(solver=solver_reply)


class ScriptedSeedWorker(SeedWorker):
    def make_pool(self, recipe, engine_args):
        return ScriptedPool(script())
