"""Runs one seed through every graph that `langgraph dev` serves, the way Studio invokes them, and prints each
outcome and its time.

    pip install "langgraph-cli[inmem]"      # where `langgraph` runs; synthgraph must be importable there
    python bench/studio_runs.py [--langgraph PATH] [--only reasoning,code]

It starts `langgraph dev` on 127.0.0.1 in the repository (langgraph.json), waits for it, then for each graph posts
a stateless run (`POST /runs/wait`: the seed as JSON input, an empty context) and reads the final state. The
graphs' contexts come from their demo recipes, so this loads the embedded model (once, shared by all graphs).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPOSITORY = Path(__file__).resolve().parent.parent
SEEDS = {
    "reasoning": {"topic": "apples at a market"},
    "code": {"topic": "counting words in a sentence"},
    "tool_use": {"kind": "single"},
    "dialogue": {"cell": 0},
    "domain": {"kind": "factual"},
    "two_step": {"topic": "apples"},                                  # demo pipelines (demos/*.yaml)
    "label_reviews": {"id": "r1", "review": "The kettle broke after a week and support never answered."},
}


def wait_until_up(base: str, server: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"langgraph dev exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"langgraph dev did not answer on {base} within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langgraph", default="langgraph", help="the langgraph CLI (from langgraph-cli[inmem])")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--only", default=",".join(SEEDS), help="comma-separated graph names")
    parser.add_argument("--log", default="langgraph-dev.log", help="the server's output (errors of failed runs)")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    log = open(args.log, "w")
    # --allow-blocking: the sandbox sets each run up (its cgroup folder, the program's files) with a few ms of
    # synchronous file IO, which the dev server's blocking-call check refuses on its event loop.
    server = subprocess.Popen([args.langgraph, "dev", "--no-browser", "--no-reload", "--allow-blocking",
                               "--host", "127.0.0.1",
                               "--port", str(args.port)], cwd=REPOSITORY, start_new_session=True,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(base, server)
        served = {a["graph_id"] for a in httpx.post(f"{base}/assistants/search", json={"limit": 100}).json()}
        print(f"langgraph dev serves: {', '.join(sorted(served))}")
        failures = 0
        for name in args.only.split(","):
            t0 = time.perf_counter()
            response = httpx.post(f"{base}/runs/wait", timeout=1800,
                                  json={"assistant_id": name, "input": {"seed": SEEDS[name]}, "context": {}})
            took = time.perf_counter() - t0
            state = response.json() if response.status_code == 200 else {}
            outcome = state.get("outcome") if isinstance(state, dict) else None
            if outcome is None:
                failures += 1
                print(f"{name:10s} FAILED in {took:6.1f} s: HTTP {response.status_code} {response.text[:300]}")
            else:
                print(f"{name:10s} {outcome:9s} in {took:6.1f} s; state keys: {', '.join(sorted(state))}")
        sys.exit(1 if failures else 0)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
