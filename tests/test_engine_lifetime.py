"""SIGKILL a run and its engine processes go with it: none is left holding the model's memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ------------------------------------------------------------------------------------ without a model

PARENT = textwrap.dedent("""
    import multiprocessing, sys, time
    sys.path.insert(0, sys.argv[2])   # a stand-in `vllm` package whose engine module takes 5 s to import
    from synthgraph.agents.engine_lifetime import bind_engine_processes
    from vllm.slow_engine import engine_core

    if __name__ == "__main__":
        bind_engine_processes()
        # spawn (as vLLM does on CPU): the child imports the engine module again, for 5 s, before it runs
        proc = multiprocessing.get_context(sys.argv[1]).Process(target=engine_core)
        proc.start()
        print(proc.pid, flush=True)
        time.sleep(600)
""")

SLOW_ENGINE = """
import time
time.sleep(5)   # importing vLLM and torch takes this long on a busy 2-core machine


def engine_core():
    time.sleep(600)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_an_engine_process_dies_with_its_parent_even_while_it_starts(tmp_path, method):
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text("")
    (tmp_path / "vllm" / "slow_engine.py").write_text(SLOW_ENGINE)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, method, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    engine = int(parent.stdout.readline())
    time.sleep(1)  # the spawned child is still importing the engine
    assert alive(engine)
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 2  # well before the child would finish importing and look around
    while alive(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive(engine)
    if left:
        os.kill(engine, signal.SIGKILL)
    assert not left, "the engine process outlived its parent"


# ---------------------------------------------------------------------------------- the real engine

RUN = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from synthgraph.graphs.recipe import load_recipe
    from synthgraph.graphs.runner import Runner

    recipe, seeds = load_recipe(Path({recipe!r}))
    def on_update(tally):
        if tally.first_call_at is not None:
            print("generating", flush=True)
    asyncio.run(Runner(recipe, seeds, store_path=sys.argv[1], limit=16, on_update=on_update).run())
""")


def engine_processes(pids: list[int]) -> list[int]:
    return [p for p in pids if alive(p) and ("EngineCore" in title(p) or "Worker" in title(p)
                                             or "multiprocessing" in title(p))]


def kill_and_watch(tmp_path, *, when: str) -> tuple[float, list[int]]:
    """Start a real run, SIGKILL its process when `when` is reached; returns (engine RSS MB at the kill,
    engine processes alive 10 s later)."""
    code = RUN.format(recipe=str(REPO / "demos" / "reasoning.yaml"))
    run = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "kill.duckdb")], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 600
        engines: list[int] = []
        if when == "load":
            while time.monotonic() < deadline and not any("EngineCore" in title(p) for p in engines):
                time.sleep(0.2)
                engines = engine_processes(descendants(run.pid))
            time.sleep(5)  # well into loading the weights
        else:
            for line in run.stdout:
                if line.startswith("generating"):
                    break
            time.sleep(3)
        engines = engine_processes(descendants(run.pid))
        assert engines, f"no engine process under the run ({when})"
        held = rss_mb(engines)
        run.kill()
        run.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in engines) and time.monotonic() < deadline:
            time.sleep(0.1)
        return held, [p for p in engines if alive(p)]
    finally:
        if run.poll() is None:
            run.kill()


@pytest.mark.model
@pytest.mark.parametrize("when", ["load", "generating"])
def test_sigkill_leaves_no_engine_process(tmp_path, when):
    held, left = kill_and_watch(tmp_path, when=when)
    rss_left = rss_mb(left)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    print(f"killed at {when}: engine RSS {held:.0f} MB at the kill; {len(left)} engine processes and "
          f"{rss_left:.0f} MB left 10 s later")
    assert not left, f"engine processes outlived the run: {[title(p) for p in left]}"
