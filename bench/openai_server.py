"""The reasoning pipeline against an OpenAI-compatible server that is already running (`transformers serve` on a
GPU, say, where vLLM's CUDA build cannot be installed), beside the bare OpenAI client on the same requests.

Prints figures, asserts nothing. For each seed count, one after the other on the same server:
  pipeline: the reasoning recipe through the whole runner on gold seeds (so no proposer), the k solver samples of
      each seed sent to the server, the critic's and the diagnosis' turns answered by the scripted model of
      bench/orchestration.py (transformers serve ignores `response_format`, so it cannot hold them to their JSON);
      generated tokens/s and solver calls/s;
  raw: the very same solver calls (replayed from the run's lineage, with their sampling) sent all at once with
      the bare OpenAI client; the pipeline / raw ratio.
A server that is not vLLM reports no queue, so admission is paced by --concurrency alone (seeds in flight).
transformers serve's continuous batching takes temperature and top_p from the first request it serves and
max_tokens from each: the bench's first request, its check that the server answers, carries the solver's. It
samples only if the model folder's generation_config.json says "do_sample": true, else every call is greedy.

    transformers serve MODEL_FOLDER --continuous-batching --device cuda --host 127.0.0.1 --port 8000 &
    python bench/openai_server.py --server http://127.0.0.1:8000/v1 --model MODEL_FOLDER --seeds 256
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from orchestration import scripted_team
from reasoning_throughput import replay

from synthgraph.agents.models import CallRecord, ModelPool, ModelSpec, ScriptedChatModel
from synthgraph.graphs.recipe import SolverSettings, load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner, RunTally


class SolverOnServerPool(ModelPool):
    """The server's spec (the solver's) is served by the server; every other role by the scripted model."""

    def _build(self, spec: ModelSpec):
        return super()._build(spec) if spec.provider == "openai" else ScriptedChatModel(respond=scripted_team)


def gold_seeds(count: int) -> list[dict]:
    return [{"id": f"g{i}", "problem": f"Ann has {3 + i % 17} bags with {4 + i % 23} apples in each bag and eats "
                                       f"{i % 5} of them. How many apples are left?",
             "answer": str((3 + i % 17) * (4 + i % 23) - i % 5)} for i in range(count)]


async def pipeline(server: str, seeds: int, args) -> tuple[list[CallRecord], float, RunTally]:
    recipe = parse_recipe({
        "name": "bench-openai-server", "graph": "reasoning", "model": "vllm:scripted",
        "seeds": {"inline": gold_seeds(seeds)}, "concurrency": args.concurrency, "max_model_attempts": args.attempts,
        "roles": {"solver": {"model": server, "samples": args.samples, "max_tokens": args.max_tokens}}})
    records: list[CallRecord] = []
    with tempfile.TemporaryDirectory() as tmp:
        pool = SolverOnServerPool(max_attempts=recipe.max_model_attempts)
        runner = Runner(recipe, load_seeds(recipe, base=Path(tmp), where="bench"),
                        store_path=Path(tmp) / "bench.duckdb", pool=pool, on_call=records.append)
        t0 = time.perf_counter()
        result = await runner.run()
        wall = time.perf_counter() - t0
    return [r for r in records if r.role == "solver"], wall, result.tally


async def answers(base_url: str, name: str, temperature: float) -> None:
    """One short chat turn at the solver's temperature, so a server that is not there or does not serve the model
    fails here, in one line, and transformers serve's continuous batching takes the solver's sampling from it."""
    from openai import AsyncOpenAI, OpenAIError

    async with AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=600, max_retries=0) as client:
        try:
            await client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                                 temperature=temperature)
        except OpenAIError as exc:
            raise SystemExit(f"{base_url} did not answer a chat turn for {name!r}: {exc}; start the server first "
                             "(see this file's docstring)") from None


async def bench(args) -> None:
    server = f"openai:{args.server}:{args.model}"
    await answers(args.server, args.model, SolverSettings().temperature)
    print(f"{args.model} at {args.server}: k={args.samples} solver samples per seed, max_tokens {args.max_tokens}, "
          f"at most {args.concurrency} seeds in flight, {args.attempts} attempt(s) per call")
    for count in args.seeds:
        solver_calls, wall, tally = await pipeline(server, count, args)
        tokens = sum(r.completion_tokens or 0 for r in solver_calls)
        t0 = time.perf_counter()
        raw_tokens = await replay(args.server, args.model, solver_calls)
        raw_wall = time.perf_counter() - t0
        rate, raw_rate = tokens / wall, raw_tokens / raw_wall
        print(f"    {count} seeds, pipeline: {len(solver_calls)} solver calls, {tokens} tokens in {wall:.1f} s = "
              f"{rate:.1f} tok/s, {len(solver_calls) / wall:.1f} calls/s ({tally.accepted} accepted, "
              f"{tally.rejected} rejected, {tally.errors} errors, {tally.calls} agent calls in all)")
        print(f"    {count} seeds, raw: the same {len(solver_calls)} calls all at once, {raw_tokens} tokens in "
              f"{raw_wall:.1f} s = {raw_rate:.1f} tok/s, {len(solver_calls) / raw_wall:.1f} calls/s;  "
              f"pipeline / raw = {rate / raw_rate:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True, help="the model's name on the server")
    parser.add_argument("--seeds", type=int, nargs="+", default=[32, 128, 512], help="seed counts, a run each")
    parser.add_argument("--samples", type=int, default=4, help="solver samples per seed (k)")
    parser.add_argument("--max-tokens", type=int, default=192, help="the solver's max_tokens")
    parser.add_argument("--concurrency", type=int, default=256, help="seeds in flight at most")
    parser.add_argument("--attempts", type=int, default=3,
                        help="tries of a call whose output is refused (a runaway that hits max_tokens, say)")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
