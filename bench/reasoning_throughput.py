"""Reasoning pipeline throughput: orchestration overhead, and how close the graph keeps vLLM to a full batch.

Prints figures, asserts nothing:
  (a) agent calls per second through the whole runner (graph, verification, store writes) with a
      zero-latency scripted model — the ceiling orchestration puts on any engine;
  (b) generated tokens/s of the reasoning pipeline on the real model, then of raw engine generation of the
      very same prompts (replayed from the run's lineage, all submitted at once), and their ratio.

    .venv/bin/python bench/reasoning_throughput.py                       # both; (b) on the embedded model
    .venv/bin/python bench/reasoning_throughput.py --skip-model          # (a) only, seconds
    .venv/bin/python bench/reasoning_throughput.py --model vllm:smollm2-135m --model-seeds 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from synthgraph.agents.models import CallRecord, ModelPool, ModelSpec, ScriptedChatModel
from synthgraph.graphs.recipe import load_recipe, load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner

DEMO = Path(__file__).resolve().parents[1] / "demos" / "reasoning.yaml"


def scripted_team(messages, kwargs) -> str:
    """Instant, always-usable replies for every reasoning role."""
    system = messages[0].content
    if "You write new" in system:
        return "Problem: Ann has 6 bags of 7 apples. How many apples?\n```python\nprint(6 * 7)\n```"
    if "You write short Python programs" in system:      # the second program that corroborates the reference
        return "```python\nprint(6 * 7)\n```"
    if "You review worked" in system:
        return json.dumps({"reason": "Each step follows.", "score": 8})
    if "math teacher" in system:
        return json.dumps({"feedback": "Multiply."})
    return "6 bags of 7 apples is 6 * 7 = 42 apples.\n#### 42"


class ScriptedPool(ModelPool):
    def _build(self, spec: ModelSpec):
        return ScriptedChatModel(respond=scripted_team)


def bench_orchestration(seeds: int, samples: int, concurrency: int) -> None:
    inline = [{"id": f"g{i}", "problem": f"Ann has 6 bags of 7 apples ({i}). How many apples?", "answer": "42"}
              for i in range(seeds)]
    recipe = parse_recipe({"name": "bench-fake", "graph": "reasoning", "seeds": {"inline": inline},
                                    "roles": {"solver": {"samples": samples}}, "concurrency": concurrency})
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(recipe, load_seeds(recipe, base=Path(tmp), where="bench"),
                        store_path=Path(tmp) / "bench.duckdb", pool=ScriptedPool())
        t0 = time.perf_counter()
        result = asyncio.run(runner.run())
        elapsed = time.perf_counter() - t0
    tally = result.tally
    print(f"(a) zero-latency model: {seeds} seeds x k={samples}, concurrency {concurrency}")
    print(f"    {tally.calls} agent calls, {tally.accepted} accepted samples in {elapsed:.2f} s")
    print(f"    {tally.calls / elapsed:.0f} agent calls/s, {seeds / elapsed:.1f} seeds/s "
          f"(graph, math-verify checks, store writes; gold seeds, so no sandbox runs)")


def bench_model(model: str | None, seeds: int, concurrency: int) -> None:
    recipe, all_seeds = load_recipe(DEMO)
    if model:
        recipe = recipe.model_copy(update={"model": model})
    recipe = recipe.model_copy(update={"concurrency": concurrency})
    pool = ModelPool(recipe.engine, max_attempts=recipe.max_model_attempts)
    records: list[CallRecord] = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(recipe, all_seeds, store_path=Path(tmp) / "bench.duckdb", limit=seeds, pool=pool,
                        on_call=records.append)
        try:
            result = asyncio.run(_pipeline_then_raw(runner, pool, records))
        finally:
            pool.shutdown()
    pipeline, raw = result
    print(f"(b) {recipe.model}: {seeds} seeds, concurrency {concurrency}, model load {runner.tally.load_s:.0f} s")
    print(f"    pipeline: {pipeline[1]} generated tokens in {pipeline[0]:.1f} s = {pipeline[1] / pipeline[0]:.1f} tok/s "
          f"({len(records)} calls, {runner.tally.accepted} accepted / {runner.tally.rejected} rejected / "
          f"{runner.tally.errors} errors)")
    print(f"    raw generate, same {len(records)} prompts at once: {raw[1]} tokens in {raw[0]:.1f} s = "
          f"{raw[1] / raw[0]:.1f} tok/s")
    print(f"    pipeline / raw = {(pipeline[1] / pipeline[0]) / (raw[1] / raw[0]):.2f}")


async def _pipeline_then_raw(runner: Runner, pool: ModelPool, records: list[CallRecord]):
    await pool.start()
    await runner.run()
    pipeline = (runner.tally.generation_s, runner.tally.completion_tokens)
    engine = pool._engines[0]
    t0 = time.perf_counter()
    outputs = await asyncio.gather(*(
        engine.generate(r.prompt, {k: v for k, v in r.sampling.items() if v is not None}) for r in records))
    raw = (time.perf_counter() - t0, sum(o[2] for o in outputs))
    return pipeline, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake-seeds", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--model", help="model spec; default: the demo recipe's")
    parser.add_argument("--model-seeds", type=int, default=8)
    args = parser.parse_args()
    bench_orchestration(args.fake_seeds, args.samples, args.concurrency)
    if not args.skip_model:
        bench_model(args.model, args.model_seeds, args.concurrency)


if __name__ == "__main__":
    main()
