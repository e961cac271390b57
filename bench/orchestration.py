"""Orchestration overhead: synthgraph's runner on a zero-latency model, beside bare LangGraph of the same shape.

Prints figures, asserts nothing.

  (a) Agent calls per second of the reasoning recipe through the whole runner — graph, math-verify checks,
      dedup and decontamination, store writes — on gold seeds (so no sandbox runs) with a scripted model that
      answers at once, with the runner's defaults (which skip step checkpoints once model calls prove faster
      than 10 ms); then the same with every seed checkpointed step by step (as with a real engine); then a plain
      LangGraph graph of the same shape (propose -> k x solve via Send -> critic) driven by LangChain's
      `FakeListChatModel`, as many graphs in flight; then the same graph on a fake that answers on the event loop
      (`FakeListChatModel` hops to a worker thread per call, which synthgraph's scripted model does not: the
      fairer baseline). One process, one after the other, each after a warm-up.
      Figures are per wall-clock second and per CPU-second of this process (all its threads): on a shared
      machine the second is the steadier, and "on one core" means that.
  (b) --scale: the cost of a seed from 100 to 10,000 seeds, each size in a fresh process: wall and CPU time per
      seed, peak resident memory, and the store's size.
  (c) --batches: what the store's writer pays per seed by batch size: (a)'s finished seeds, kept as the run
      wrote them, written again into a fresh store in batches of each size on one DuckDB thread (as the run's
      writer does), and the store closed; CPU per seed. The seeds' rows are not registered first, so their
      status updates touch nothing: the figures are a little under a run's.

    .venv/bin/python bench/orchestration.py                       # (a), 2,000 seeds, ~1 min
    .venv/bin/python bench/orchestration.py --seeds 500           # quicker
    .venv/bin/python bench/orchestration.py --repeat 5            # (a) 5 rounds, with medians (~3 min)
    .venv/bin/python bench/orchestration.py --scale               # (b), ~3 min
    .venv/bin/python bench/orchestration.py --batches             # (c), ~1 min
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, TypedDict

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from synthgraph.agents.models import ModelPool, ModelSpec, ScriptedChatModel
from synthgraph.graphs.recipe import load_seeds, parse_recipe
from synthgraph.graphs import runner as runner_module
from synthgraph.graphs.runner import Runner, fewer_collections
from synthgraph.store.db import Store

REPLIES = {
    "solver": "6 bags of 7 apples is 6 * 7 = 42 apples.\n#### 42",
    "critic": json.dumps({"reason": "Each step follows.", "score": 8}),
    "diagnose": json.dumps({"feedback": "Multiply."}),
}


def scripted_team(messages, kwargs) -> str:
    """Instant, always-usable replies, chosen by the calling role (and the critic's template) from the call's
    metadata."""
    return REPLIES["diagnose" if kwargs["prompt"] == "reasoning_diagnose" else kwargs["role"]]


class ScriptedPool(ModelPool):
    def _build(self, spec: ModelSpec):
        return ScriptedChatModel(respond=scripted_team)


def synthgraph_run(seeds: int, samples: int, concurrency: int, checkpoints: str = "auto") -> dict:
    """checkpoints: "auto" (the runner's default: seeds are checkpointed step by step unless model calls prove
    faster than 10 ms, as these do), "always" (every seed, as with a real engine) or "off"."""
    inline = [{"id": f"g{i}", "problem": f"Ann has 6 bags of 7 apples ({i}). How many apples?", "answer": "42"}
              for i in range(seeds)]
    recipe = parse_recipe({"name": "bench-orchestration", "graph": "reasoning", "seeds": {"inline": inline},
                           "roles": {"solver": {"samples": samples}}, "concurrency": concurrency})
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.duckdb"
        runner = Runner(recipe, load_seeds(recipe, base=Path(tmp), where="bench"), store_path=store,
                        pool=ScriptedPool(), checkpoints=checkpoints != "off")
        threshold = runner_module.CHECKPOINT_CALLS_OVER_S
        runner_module.CHECKPOINT_CALLS_OVER_S = 0.0 if checkpoints == "always" else threshold
        wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        try:
            result = asyncio.run(runner.run())
        finally:
            runner_module.CHECKPOINT_CALLS_OVER_S = threshold
        wall, cpu, loop_cpu = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - loop_cpu
        store_mb = store.stat().st_size / 2**20
    tally = result.tally
    assert tally.seeds_done == seeds and tally.accepted == seeds * samples, "the benchmark's seeds must all pass"
    return {"calls": tally.calls, "accepted": tally.accepted, "wall": wall, "cpu": cpu, "loop_cpu": loop_cpu,
            "store_mb": store_mb}


class Trace(TypedDict):
    """The bare graph's state."""

    problem: str
    solutions: Annotated[list[str], operator.add]
    verdict: str


class OnLoopFakeChatModel(FakeListChatModel):
    """`FakeListChatModel` answering on the event loop: LangChain's default `_agenerate` runs `_generate` in the
    default thread pool, a hop per call that neither synthgraph's scripted model nor a real async client makes."""

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        return self._generate(messages, stop=stop, **kwargs)


def bare_langgraph_run(graphs: int, samples: int, in_flight: int, on_loop: bool = False) -> dict:
    model = (OnLoopFakeChatModel if on_loop else FakeListChatModel)(responses=[REPLIES["solver"]])

    async def propose(state: Trace) -> dict:
        return {"problem": (await model.ainvoke("Write a problem.")).content}

    def fan_out(state: Trace) -> list[Send]:
        return [Send("solve", {"problem": state["problem"]}) for _ in range(samples)]

    async def solve(task: dict) -> dict:
        return {"solutions": [(await model.ainvoke(task["problem"])).content]}

    async def critic(state: Trace) -> dict:
        return {"verdict": (await model.ainvoke("Judge: " + state["solutions"][0])).content}

    builder = StateGraph(Trace)
    builder.add_node(propose)
    builder.add_node(solve)
    builder.add_node(critic)
    builder.add_edge(START, "propose")
    builder.add_conditional_edges("propose", fan_out, ["solve"])
    builder.add_edge("solve", "critic")
    builder.add_edge("critic", END)
    graph = builder.compile()

    async def run_all() -> None:
        slots = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with slots:
                await graph.ainvoke({"problem": "", "solutions": [], "verdict": ""})

        await asyncio.gather(*(one() for _ in range(graphs)))

    with fewer_collections():  # the same collector settings synthgraph's runs get
        wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        asyncio.run(run_all())
        wall, cpu, loop_cpu = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - loop_cpu
    return {"calls": graphs * (samples + 2), "wall": wall, "cpu": cpu, "loop_cpu": loop_cpu}


def rates(figures: dict) -> tuple[float, float, float]:
    return tuple(figures["calls"] / figures[clock] for clock in ("wall", "cpu", "loop_cpu"))


def bench_overhead(seeds: int, samples: int, concurrency: int, repeat: int = 1) -> None:
    synthgraph_run(max(50, seeds // 20), samples, concurrency)     # warm-up: imports, first-call caches
    bare_langgraph_run(max(50, seeds // 20), samples, concurrency)
    print(f"(a) zero-latency model, {seeds} seeds x k={samples}, {concurrency} in flight; agent calls per second of "
          "wall-clock, of the process's CPU (all threads), and of the event loop's thread (the one core the "
          "orchestration itself needs: the store's and the checkpoints' writers run in threads of their own)")
    ratios: dict[str, list[float]] = {"bare LangGraph": [], "bare LangGraph, fake on the loop": []}
    cpu_rates: dict[str, list[float]] = {}
    for round_ in range(repeat):
        # One after the other in each round, so a round's ratios compare runs minutes apart at most: the host's
        # own speed drifts by a quarter within an hour.
        full = synthgraph_run(seeds, samples, concurrency)
        runs = [("synthgraph, defaults", full)]
        if round_ == 0:
            runs.append(("synthgraph, every seed checkpointed", synthgraph_run(seeds, samples, concurrency, "always")))
        bare = bare_langgraph_run(seeds, samples, concurrency)
        bare_on_loop = bare_langgraph_run(seeds, samples, concurrency, on_loop=True)
        runs += [("bare LangGraph, same shape", bare), ("bare LangGraph, fake on the loop", bare_on_loop)]
        if repeat > 1:
            print(f"  round {round_ + 1} of {repeat}")
        for label, figures in runs:
            wall_rate, cpu_rate, loop_rate = rates(figures)
            cpu_rates.setdefault(label, []).append(cpu_rate)
            print(f"    {label:36s} {figures['calls']:6d} calls in {figures['wall']:6.2f} s: {wall_rate:6.0f}/s wall, "
                  f"{cpu_rate:6.0f}/s process CPU, {loop_rate:6.0f}/s loop CPU "
                  f"({1000 * figures['cpu'] / seeds:.2f} ms process CPU per seed)")
        for label, baseline in (("bare LangGraph", bare), ("bare LangGraph, fake on the loop", bare_on_loop)):
            ratios[label].append(rates(full)[1] / rates(baseline)[1])
            print(f"    synthgraph / {label}: " + ", ".join(f"{a / b:.2f} ({clock})" for a, b, clock in zip(
                rates(full), rates(baseline), ("wall", "process CPU", "loop CPU"))))
    if repeat > 1:
        print(f"  medians of {repeat} rounds (process CPU): " + ", ".join(
            f"{label} {statistics.median(values):.0f}/s" for label, values in cpu_rates.items() if len(values) > 1))
        print("  median ratios (process CPU): " + ", ".join(
            f"synthgraph / {label} {statistics.median(values):.2f}" for label, values in ratios.items()))
    print("    synthgraph = graph, math-verify checks, dedup + decontamination, store writes; defaults checkpoint "
          "seeds step by step only while model calls take 10 ms or more (here: the first 32 calls)")


def bench_scale(sizes: list[int], samples: int, concurrency: int) -> None:
    print(f"(b) cost per seed by run size (fresh process each; k={samples}, {concurrency} in flight)")
    print(f"    {'seeds':>6s} {'wall s':>8s} {'ms/seed':>8s} {'CPU ms/seed':>12s} {'peak RSS MB':>12s} {'store MB':>9s}")
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--samples", str(samples),
                              "--concurrency", str(concurrency)], capture_output=True, text=True, check=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"    {size:6d} {figures['wall']:8.2f} {1000 * figures['wall'] / size:8.2f} "
              f"{1000 * figures['cpu'] / size:12.2f} {figures['peak_rss_mb']:12.0f} {figures['store_mb']:9.1f}")


def bench_batches(seeds: int, samples: int, concurrency: int, sizes: list[int]) -> None:
    outcomes = []
    write = Store.write_outcomes

    def keep(store, batch):
        batch = list(batch)
        outcomes.extend(batch)
        write(store, batch)

    Store.write_outcomes = keep
    try:
        synthgraph_run(seeds, samples, concurrency)
    finally:
        Store.write_outcomes = write
    rows = sum(len(o.samples) + len(o.messages) + len(o.verdicts) + len(o.agent_calls) for o in outcomes)
    print(f"(c) the store's writer by batch size: {len(outcomes)} finished seeds of (a) ({rows / len(outcomes):.0f} rows "
          "each), written again into a fresh store on one DuckDB thread; CPU per seed, writes and close")
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "batches.duckdb")
            store.con.execute("SET threads = 1")
            cpu = time.thread_time()
            for start in range(0, len(outcomes), size):
                store.write_outcomes(outcomes[start:start + size])
            store.close()
            cpu = time.thread_time() - cpu
        print(f"    batches of {size:5d}: {1000 * cpu / len(outcomes):.2f} ms per seed")


def one_size(size: int, samples: int, concurrency: int) -> None:
    gc.collect()
    figures = synthgraph_run(size, samples, concurrency)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="(a): rounds of synthgraph then bare LangGraph, with "
                                                               "the medians of their rates and ratios")
    parser.add_argument("--scale", action="store_true", help="(b) only: 100 to 10,000 seeds")
    parser.add_argument("--sizes", default="100,1000,3000,10000")
    parser.add_argument("--batches", action="store_true", help="(c) only: the writer's cost by batch size")
    parser.add_argument("--batch-sizes", default="1024,256,64,1024,256,64")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # (b)'s child process
    args = parser.parse_args()
    if args.one:
        one_size(args.one, args.samples, args.concurrency)
    elif args.batches:
        bench_batches(args.seeds, args.samples, args.concurrency, [int(s) for s in args.batch_sizes.split(",")])
    elif args.scale:
        bench_scale([int(s) for s in args.sizes.split(",")], args.samples, args.concurrency)
    else:
        bench_overhead(args.seeds, args.samples, args.concurrency, args.repeat)


if __name__ == "__main__":
    main()
