"""SIGKILL a real run mid-way, rerun the same command: nothing written is lost, nothing is duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb

CHILD = textwrap.dedent("""
    import asyncio, json, sys, time
    sys.path.insert(0, {tests!r})
    from fakes import ReasoningScript, ScriptedPool
    from synthgraph.graphs.recipe import load_seeds, parse_recipe
    from synthgraph.graphs.runner import Runner

    def solver(messages):
        time.sleep(0.05)  # slow enough that the kill lands mid-run, after the writer's first batches
        n = int(messages[-1].content.split()[2])
        return f"{{n}} times 7 is {{7 * n}}.\\n#### {{7 * n}}"

    seeds = [{{"id": f"s{{i:03d}}", "problem": f"What is {{i}} times 7?", "answer": str(7 * i)}} for i in range(60)]
    recipe = parse_recipe({{"name": "kill", "graph": "reasoning", "seeds": {{"inline": seeds}},
                                     "roles": {{"solver": {{"samples": 2}}}}, "concurrency": 4}})
    script = ReasoningScript(solver=solver)
    runner = Runner(recipe, load_seeds(recipe, base=None, where="t"), store_path=sys.argv[1],
                    pool=ScriptedPool(script), on_update=lambda t: print("done", t.seeds_done, flush=True))
    result = asyncio.run(runner.run())
    print("calls", json.dumps(dict(script.calls), separators=(",", ":")), "skipped", result.tally.seeds_skipped, flush=True)
""")


def start(db: Path) -> subprocess.Popen:
    code = CHILD.format(tests=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    db = tmp_path / "kill.duckdb"
    child = start(db)
    deadline = time.monotonic() + 120
    for line in child.stdout:
        # half the seeds finished: the writer, which gathers a second's worth of them per batch, has written some
        if line.startswith("done") and int(line.split()[1]) >= 30:
            break
        assert time.monotonic() < deadline, "the child never got going"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    con = duckdb.connect(str(db), read_only=True)
    done_before = con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone()[0]
    samples_before = set(con.execute("SELECT sample_id FROM samples WHERE status = 'accepted'").fetchall())
    con.close()
    assert 0 < done_before < 60, "the kill should land mid-run"
    assert len(samples_before) == 2 * done_before  # every finished seed landed whole

    rerun = start(db)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    calls_line = output.strip().splitlines()[-1].split()
    assert int(calls_line[-1]) == done_before  # those seeds were skipped, not redone
    # the seeds in flight resumed from their checkpoints (and seeds whose graph had finished but were not yet
    # written were taken from theirs whole): solver calls that had finished are not redone
    solver_calls = json.loads(calls_line[1])["solver"]
    not_redone = 2 * (60 - done_before) - solver_calls
    assert not_redone >= 0

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone()[0] == 60
    assert con.execute("SELECT count(*), count(DISTINCT sample_id) FROM samples").fetchone() == (120, 120)
    after = set(con.execute("SELECT sample_id FROM samples WHERE status = 'accepted'").fetchall())
    assert samples_before <= after
    # lineage: one solver call per sample, none left over from the killed, unfinished seeds — except the calls a
    # resumed seed made before the kill, whose lineage died with the process (the calls are kept in memory)
    assert con.execute("SELECT count(*) FROM agent_calls WHERE role = 'solver'").fetchone()[0] == 120 - not_redone
    con.close()


# ---------------------------------------------------------------------------- mid-seed resume (dialogues)

DIALOGUE_CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    from fakes import ScriptedPool
    from test_dialogue_graph import RECIPE, DialogueScript
    from synthgraph.agents.models import ScriptedChatModel
    from synthgraph.graphs.recipe import load_seeds, parse_recipe
    from synthgraph.graphs.runner import Runner

    class SlowChatModel(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            await asyncio.sleep(0.05)  # a model call waits on the engine without blocking the loop, as vLLM's does
            return self._generate(messages, stop, run_manager, **kwargs)

    class SlowPool(ScriptedPool):
        def _build(self, spec):
            return SlowChatModel(respond=self.script)

    recipe = parse_recipe({{**RECIPE, "concurrency": 4,
                           "seeds": {{"inline": [{{"id": f"d{{i:02d}}"}} for i in range({seeds})]}}}})
    runner = Runner(recipe, load_seeds(recipe, base=None, where="t"), store_path=sys.argv[1],
                    pool=SlowPool(DialogueScript()), checkpoints=sys.argv[2] == "on",
                    on_call=lambda record: print("call", flush=True))
    result = asyncio.run(runner.run())
    print("resumed", result.tally.seeds_resumed, flush=True)
""")
DIALOGUE_SEEDS = 12


def run_dialogues(db: Path, checkpoints: bool, *, kill_after_calls: int | None = None) -> tuple[int, int]:
    """Run the dialogue child (12 seeds, 4 in flight); SIGKILL it after that many model calls if asked.
    Returns (model calls it made, seeds it resumed mid-seed; -1 when killed)."""
    code = DIALOGUE_CHILD.format(tests=str(Path(__file__).parent), seeds=DIALOGUE_SEEDS)
    child = subprocess.Popen([sys.executable, "-c", code, str(db), "on" if checkpoints else "off"],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    calls, resumed = 0, -1
    for line in child.stdout:
        calls += line.startswith("call")
        if line.startswith("resumed"):
            resumed = int(line.split()[1])
        if kill_after_calls is not None and calls >= kill_after_calls:
            os.killpg(child.pid, signal.SIGKILL)
            break
    calls += sum(line.startswith("call") for line in child.stdout)  # what it printed before it died
    child.wait(timeout=60)
    assert child.returncode == (-signal.SIGKILL if kill_after_calls is not None else 0)
    return calls, resumed


DIALOGUES_SQL = """SELECT s.seed_id, s.status, list(m.content ORDER BY m.turn) FROM samples s JOIN messages m
                   USING (sample_id) GROUP BY ALL ORDER BY 1"""


def stored(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def killed_and_resumed(tmp_path: Path, checkpoints: bool, kill_after_calls: int, clean_calls: int,
                       clean_db: Path) -> dict:
    """Kill a dialogue run after `kill_after_calls` calls, rerun it to the end: what was lost, duplicated, redone,
    and how many dialogues differ from the clean run's (the fake model is deterministic, so none should)."""
    db = tmp_path / f"kill-{checkpoints}-{kill_after_calls}.duckdb"
    before, _ = run_dialogues(db, checkpoints, kill_after_calls=kill_after_calls)
    after, resumed = run_dialogues(db, checkpoints)
    (samples, distinct), = stored(db, "SELECT count(*), count(DISTINCT seed_id) FROM samples WHERE kind = 'dialogue'")
    (pending,), = stored(db, "SELECT count(*) FROM seeds WHERE status <> 'done'")
    differ = sum(a != b for a, b in zip(stored(db, DIALOGUES_SQL), stored(clean_db, DIALOGUES_SQL)))
    return {"lost": DIALOGUE_SEEDS - distinct, "duplicated": samples - distinct, "pending": pending,
            "differ": differ, "redone": before + after - clean_calls, "resumed": resumed}


def test_sigkill_mid_dialogue_resumes_each_seed_from_its_last_finished_node(tmp_path):
    clean, _ = run_dialogues(tmp_path / "clean.duckdb", checkpoints=True)
    outcome = killed_and_resumed(tmp_path, True, clean // 3, clean, tmp_path / "clean.duckdb")
    assert outcome["lost"] == 0 and outcome["duplicated"] == 0 and outcome["pending"] == 0
    assert outcome["differ"] == 0  # a resumed dialogue is the dialogue an uninterrupted run makes
    assert outcome["resumed"] >= 1
    # each dialogue node makes one model call: a seed in flight loses the call of the node it was in, and at most
    # one more when the kill lands between a node's end and its checkpoint's commit (LangGraph writes it while the
    # next node runs, and the saver commits its queue every 20 ms: less than one of these 50 ms calls)
    assert 0 <= outcome["redone"] <= 2 * 4
    assert not Path(f"{tmp_path / 'kill-True-' }{clean // 3}.duckdb.checkpoints.sqlite").exists()
