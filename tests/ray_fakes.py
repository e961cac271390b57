"""A Ray worker on the scripted fake model, for the Ray tests; Ray's worker processes import it from here.

The solver answers "What is N times 7?" correctly. A file `die-N` in the folder named by SYNTHGRAPH_TEST_DIE_DIR
makes the worker that meets seed N first delete the file and SIGKILL its own process: a worker dying mid-seed,
once, however many workers there are.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from fakes import DomainScript, ReasoningScript, RoleScript, ScriptedPool

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


class ScriptedDomainWorker(SeedWorker):
    """A grounded-QA worker on the scripted roles of tests/fakes.py: it searches the copy of the corpus it got."""

    def make_pool(self, recipe, engine_args):
        return ScriptedPool(DomainScript())


SELF_INSTRUCT_PROPOSAL = "Explain how vaccines train the immune system."


def self_instruct_pool() -> ScriptedPool:
    """Self-Instruct roles whose proposer always proposes `SELF_INSTRUCT_PROPOSAL`, and whose judge keeps it."""
    return ScriptedPool(RoleScript({
        "propose": json.dumps({"instructions": [SELF_INSTRUCT_PROPOSAL]}), "respond": "Here.",
        "judge": json.dumps({"reason": "Clear and done.", "answerable": True, "score": 8})}))


class ScriptedSelfInstructWorker(SeedWorker):
    def make_pool(self, recipe, engine_args):
        return self_instruct_pool()
