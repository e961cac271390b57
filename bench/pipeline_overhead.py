"""Is the orchestration what a user waits for? demos/two_step.yaml through synthgraph vs a bare OpenAI client.

Both arms run the same job against the same OpenAI-compatible server, alternating, in one process: for each of
N topics, request 1 (write a problem) then request 2 (solve it), max_tokens 128, temperature 0.7, seed 1234,
at most `--in-flight` topics at once. synthgraph runs the pipeline recipe with its runner (LangGraph graph,
templates, lineage, the DuckDB writer); the bare arm is `openai.AsyncOpenAI` with one semaphore, each topic one
coroutine with no barrier between its steps. Prints the wall time of each round and the ratio of the medians.

    flock /tmp/synthgraph-model.lock python bench/pipeline_overhead.py              # starts a vLLM server
    python bench/pipeline_overhead.py --base-url http://127.0.0.1:8000/v1         # uses a running one
    python bench/pipeline_overhead.py --profile                                    # + cProfile of the synthgraph arm
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from synthgraph.agents.models import EngineSettings, _configure_vllm_env, resolve_model_path
from synthgraph.graphs.recipe import load_recipe
from synthgraph.graphs.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
SERVED = "qwen2.5-coder-0.5b"


def start_server(port: int) -> subprocess.Popen:
    _configure_vllm_env(EngineSettings())  # the CPU settings the in-process engine uses (threads, KV cache)
    model = resolve_model_path(SERVED)
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", "4096", "--enforce-eager", "--seed", "0"]
    print("server:", " ".join(command), flush=True)
    log = tempfile.NamedTemporaryFile(prefix="vllm-server-", suffix=".log", delete=False)  # a pipe could fill and stall it
    server = subprocess.Popen(command, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the vLLM server exited ({server.returncode}): "
                             f"{Path(log.name).read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return server
        except OSError:
            time.sleep(2)
    server.kill()
    raise SystemExit("the vLLM server did not come up within 10 minutes")


def two_step(base_url: str, n: int, in_flight: int, folder: Path):
    """The demo recipe pointed at the server, with N topics; (recipe, seeds)."""
    raw = yaml.safe_load((ROOT / "demos" / "two_step.yaml").read_text())
    topics = [json.loads(line)["topic"] for line in (ROOT / "demos" / "seeds" / "topics.jsonl").read_text().splitlines()]
    (folder / "topics.jsonl").write_text("".join(json.dumps({"topic": topics[i % len(topics)] + ("" if i < len(topics)
                                                            else f" {i}")}) + "\n" for i in range(n)))
    raw.update(model=f"openai:{base_url}:{SERVED}", concurrency=in_flight, seeds={"file": "topics.jsonl"})
    path = folder / "two_step.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_recipe(path)


async def synthgraph_arm(recipe, seeds, store: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = await Runner(recipe, seeds, store_path=store).run()
    elapsed = time.perf_counter() - t0
    if result.tally.errors or result.tally.seeds_done != len(seeds):
        from synthgraph.store.db import query

        _, errors = query(store, "SELECT reason, count(*) FROM samples WHERE status = 'error' GROUP BY 1")
        raise SystemExit(f"the synthgraph arm had errors, so its time means nothing: {errors}")
    return elapsed, result.tally.completion_tokens


async def bare_arm(base_url: str, topics: list[str], in_flight: int, prompts: tuple[str, str]) -> tuple[float, int]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"), max_retries=2,
                         timeout=600)
    slots = asyncio.Semaphore(in_flight)
    tokens = 0

    async def ask(text: str) -> str:
        nonlocal tokens
        reply = await client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": text}], max_tokens=128, temperature=0.7, top_p=1.0,
            seed=1234)
        tokens += reply.usage.completion_tokens
        return reply.choices[0].message.content or ""

    async def topic_job(topic: str) -> None:
        async with slots:
            problem = await ask(prompts[0].replace("{{ topic }}", topic))
            await ask(prompts[1].replace("{{ write.text }}", problem))

    t0 = time.perf_counter()
    await asyncio.gather(*(topic_job(t) for t in topics))
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed, tokens


async def rounds(args, base_url, folder, recipe, seeds, topics, prompts) -> None:
    await bare_arm(base_url, topics[:2], 2, prompts)  # warm-up: connections, the server's caches
    times: dict[str, list[float]] = {"synthgraph": [], "bare": []}
    for round_ in range(args.rounds):
        order = ["bare", "synthgraph"] if round_ % 2 == 0 else ["synthgraph", "bare"]
        for arm in order:
            if arm == "bare":
                elapsed, tokens = await bare_arm(base_url, topics, args.in_flight, prompts)
            else:
                store = folder / f"round{round_}.duckdb"
                profiler = cProfile.Profile() if args.profile and round_ == args.rounds - 1 else None
                if profiler:
                    profiler.enable()
                elapsed, tokens = await synthgraph_arm(recipe, seeds, store)
                if profiler:
                    profiler.disable()
                    report = io.StringIO()
                    pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(25)
                    print(report.getvalue(), flush=True)
            times[arm].append(elapsed)
            print(f"round {round_} {arm:>10}: {elapsed:6.2f} s  ({tokens} completion tokens)", flush=True)
    sg, bare = statistics.median(times["synthgraph"]), statistics.median(times["bare"])
    print(f"\nN={args.n} topics ({2 * args.n} requests), {args.in_flight} in flight, {args.rounds} rounds")
    print(f"synthgraph median {sg:.2f} s   bare AsyncOpenAI median {bare:.2f} s   ratio {sg / bare:.3f}x "
          f"(target <= 1.05x)")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="an OpenAI-compatible server serving qwen2.5-coder-0.5b "
                                           "(default: start vLLM's api_server on 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--n", type=int, default=32, help="topics (2N requests per arm and round)")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs both arms, the first arm alternating")
    parser.add_argument("--profile", action="store_true", help="cProfile the synthgraph arm of the last round")
    args = parser.parse_args()

    server = None if args.base_url else start_server(args.port)
    base_url = args.base_url or f"http://127.0.0.1:{args.port}/v1"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            recipe, seeds = two_step(base_url, args.n, args.in_flight, folder)
            prompts = (recipe.nodes["write"].llm.user, recipe.nodes["solve"].llm.user)
            topics = [s.topic for s in seeds]
            # One event loop for every round: LangChain's OpenAI client keeps its HTTP pool across calls.
            asyncio.run(rounds(args, base_url, folder, recipe, seeds, topics, prompts))
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
