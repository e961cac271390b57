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

from fakes import DomainScript, ReasoningScript, RoleScript, ScriptedPool, cite_best

from synthgraph.graphs.ray_workers import SeedWorker

SEEDS = [{"id": f"gold-{i}", "problem": f"What is {i} times 7?", "answer": str(7 * i)} for i in range(1, 11)]


def die_if_ordered(name: str, *, then_order: str | None = None) -> None:
    """SIGKILL this process if the order file `name` is in the die folder (deleting it first: one death), leaving
    the order `then_order` behind for the next process."""
    die_dir = os.environ.get("SYNTHGRAPH_TEST_DIE_DIR")
    if die_dir:
        order = Path(die_dir) / name
        try:
            order.unlink()
        except FileNotFoundError:
            pass
        else:
            if then_order:
                (Path(die_dir) / then_order).touch()
            os.kill(os.getpid(), signal.SIGKILL)


def solver_reply(messages) -> str:
    number = int(messages[-1].content.split("What is ")[1].split()[0])
    die_if_ordered(f"die-{number}")
    # Dies, and the restarted worker cannot start: as an engine that no longer loads on that node.
    die_if_ordered(f"die-for-good-{number}", then_order="fail-start")
    time.sleep(0.05)  # seeds stay in flight long enough to be lost with their worker
    return f"{number} times 7 is {7 * number}.\n#### {7 * number}"


def script() -> ReasoningScript:
    return ReasoningScript(solver=solver_reply)


class ScriptedSeedWorker(SeedWorker):
    def make_pool(self, recipe, engine_args):
        return ScriptedPool(script())

    async def start(self, store_rows=None):
        die_dir = os.environ.get("SYNTHGRAPH_TEST_DIE_DIR")
        if die_dir and (Path(die_dir) / "fail-start").exists():
            raise RuntimeError("the engine could not load (the test's order)")
        return await super().start(store_rows)


class ScriptedDomainWorker(SeedWorker):
    """A grounded-QA worker on the scripted roles of tests/fakes.py: it searches the copy of the corpus it got.
    An order file `die-domain` makes the worker whose solver answers next kill its own process."""

    def make_pool(self, recipe, engine_args):
        answer = cite_best("The Aurora kettle boils one litre of water in 210 seconds.")

        def dying_answer(messages, kwargs):
            die_if_ordered("die-domain")
            return answer(messages, kwargs)

        return ScriptedPool(DomainScript(solver=[dying_answer]))


SELF_INSTRUCT_PROPOSAL = "Explain how vaccines train the immune system."


def self_instruct_pool() -> ScriptedPool:
    """Self-Instruct roles whose proposer always proposes `SELF_INSTRUCT_PROPOSAL`, and whose judge keeps it."""
    return ScriptedPool(RoleScript({
        "propose": json.dumps({"instructions": [SELF_INSTRUCT_PROPOSAL]}), "respond": "Here.",
        "judge": json.dumps({"reason": "Clear and done.", "answerable": True, "score": 8})}))


class ScriptedSelfInstructWorker(SeedWorker):
    def make_pool(self, recipe, engine_args):
        return self_instruct_pool()
