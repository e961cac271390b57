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
        time.sleep(0.02)  # slow enough that the kill lands mid-run
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
        if line.startswith("done") and int(line.split()[1]) >= 15:
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
    # the seeds in flight (at most 4) resumed from their checkpoints: solver calls that had finished are not redone
    solver_calls = json.loads(calls_line[1])["solver"]
    not_redone = 2 * (60 - done_before) - solver_calls
    assert 0 <= not_redone <= 2 * 4

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM seeds WHERE status = 'done'").fetchone()[0] == 60
    assert con.execute("SELECT count(*), count(DISTINCT sample_id) FROM samples").fetchone() == (120, 120)
    after = set(con.execute("SELECT sample_id FROM samples WHERE status = 'accepted'").fetchall())
    assert samples_before <= after
    # lineage: one solver call per sample, none left over from the killed, unfinished seeds — except the calls a
    # resumed seed made before the kill, whose lineage died with the process (the calls are kept in memory)
    assert con.execute("SELECT count(*) FROM agent_calls WHERE role = 'solver'").fetchone()[0] == 120 - not_redone
    con.close()
