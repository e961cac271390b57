"""Reasoning pipeline throughput: how close the graph keeps vLLM to a full batch. (The orchestration's own ceiling,
with a zero-latency model beside bare LangGraph, is bench/orchestration.py.)

Prints figures, asserts nothing:
  (b) generated tokens/s of the reasoning pipeline on the real model, then of raw engine generation of the
      very same prompts (replayed from the run's lineage, all submitted at once), and their ratio, for each
      seed count; with the engine's mean batch occupancy and prefix-cache reuse during the pipeline;
  (c) in process: the k solver samples of a problem as k requests (what the graph sends) or as one with n=k.

    .venv/bin/python bench/reasoning_throughput.py                       # 8, 32, 128 seeds on the embedded model
    .venv/bin/python bench/reasoning_throughput.py --model-samples 2 --max-tokens 192 --model-seeds 128
    .venv/bin/python bench/reasoning_throughput.py --backend openai --model-seeds 32 128
    .venv/bin/python bench/reasoning_throughput.py --backend openai --model-samples 2 --max-tokens 192 \\
        --model-seeds 256 --skip-shared --bracket       # pipeline, raw, raw, pipeline: the host's drift cancels
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from synthgraph.agents.models import CallRecord, ModelPool, ModelSpec
from synthgraph.graphs.recipe import load_recipe
from synthgraph.graphs.runner import Runner
from synthgraph.store.db import query

DEMO = Path(__file__).resolve().parents[1] / "demos" / "reasoning.yaml"


class FixedPool(ModelPool):
    """The runner as it was: the engine's load is not reported, so only `concurrency` paces admission."""

    async def loads(self):
        return []


class OccupancySampler:
    """Samples the engines' running and waiting requests every `every_s` while a phase runs; given a vLLM server's
    load (`ServerLoad`), also its generated-token counter, read with the load, for the tokens/s in each tenth of
    the phase (where the batch is full, that rate against the raw replay's says what a slot yields in each)."""

    def __init__(self, pool: ModelPool, every_s: float = 0.25, server_load=None):
        self.pool, self.every_s, self.server_load = pool, every_s, server_load
        self.samples: list[tuple[int, int, int | None]] = []
        self.tokens: list[tuple[float, float]] = []   # (monotonic time, generated tokens so far)

    async def run(self) -> None:
        while True:
            for load in await self.pool.loads():
                self.samples.append((load.running, load.waiting, load.capacity))
            if self.server_load is not None:
                self.tokens.append((time.monotonic(), self.server_load.generated_tokens))
            await asyncio.sleep(self.every_s)

    def summary(self) -> str:
        if not self.samples:
            return "no load reported"
        running = sum(s[0] for s in self.samples) / len(self.samples)
        waiting = sum(s[1] for s in self.samples) / len(self.samples)
        capacity = self.samples[-1][2]
        full = f" of {capacity}" if capacity else ""
        # Where the batch was short: a tail (seeds finishing with nothing left to admit) shows in the last tenths.
        tenth = max(len(self.samples) // 10, 1)
        by_tenth = " ".join(f"{sum(s[0] for s in self.samples[i:i + tenth]) / len(self.samples[i:i + tenth]):.0f}"
                            for i in range(0, tenth * 10, tenth) if self.samples[i:i + tenth])
        return (f"mean {running:.1f}{full} running, {waiting:.1f} waiting; running by tenth of the run: {by_tenth}"
                + self._rates())

    def _rates(self) -> str:
        if len(self.tokens) < 11:
            return ""
        start, end = self.tokens[0][0], self.tokens[-1][0]
        edges = [start + (end - start) * i / 10 for i in range(11)]

        def generated_by(moment: float) -> float:   # linear between the two samples around it
            for (t0, n0), (t1, n1) in zip(self.tokens, self.tokens[1:]):
                if t0 <= moment <= t1:
                    return n0 + (n1 - n0) * (moment - t0) / max(t1 - t0, 1e-9)
            return self.tokens[-1][1]

        rates = [(generated_by(b) - generated_by(a)) / (b - a) for a, b in zip(edges, edges[1:])]
        return "; tok/s by tenth: " + " ".join(f"{r:.0f}" for r in rates)


def model_recipe(model: str | None, concurrency: int, samples: int | None, max_tokens: int | None):
    recipe, all_seeds = load_recipe(DEMO)
    update: dict = {"concurrency": concurrency}
    if model:
        update["model"] = model
    roles = recipe.roles
    if samples is not None:
        roles = roles.model_copy(update={"solver": roles.solver.model_copy(update={"samples": samples})})
    if max_tokens is not None:
        roles = roles.model_copy(update={name: getattr(roles, name).model_copy(update={"max_tokens": max_tokens})
                                         for name in ("proposer", "solver", "critic")})
    update["roles"] = roles
    return recipe.model_copy(update=update), all_seeds


def bench_model(args) -> None:
    for backend in args.backend:
        if backend == "inprocess":
            recipe, seeds = model_recipe(args.model, args.model_concurrency, args.model_samples, args.max_tokens)
            pool = (FixedPool if args.pacing == "fixed" else ModelPool)(recipe.engine,
                                                                        max_attempts=recipe.max_model_attempts)
            try:
                asyncio.run(_bench_counts(args, recipe, seeds, pool, backend))
            finally:
                pool.shutdown()
        else:
            with VLLMServer(args.model or load_recipe(DEMO)[0].model, args.port) as server:
                recipe, seeds = model_recipe(server.spec, args.model_concurrency, args.model_samples, args.max_tokens)
                pool = (FixedPool if args.pacing == "fixed" else ModelPool)(recipe.engine,
                                                                            max_attempts=recipe.max_model_attempts)
                asyncio.run(_bench_counts(args, recipe, seeds, pool, backend, server))


async def _bench_counts(args, recipe, all_seeds, pool: ModelPool, backend: str, server=None) -> None:
    t0 = time.perf_counter()
    pool.client(ModelSpec.parse(recipe.model))   # every role of the demo uses the recipe's model: load it now
    await pool.start()
    print(f"(b) {recipe.model} ({backend}, admission paced by {'the engine queue' if args.pacing == 'engine' else 'concurrency'}"
          f", concurrency bound {recipe.concurrency}, k={recipe.roles.solver.samples}, "
          f"max_tokens {recipe.roles.solver.max_tokens}); ready in {time.perf_counter() - t0:.0f} s")
    for count in args.model_seeds:
        if count > len(all_seeds) and recipe.budget.target_accepted is None:
            # The demo's topic list is short: further passes over it are new seeds (`ID#2`, ...), as a run with a
            # target makes them; a seed budget stops at `count`.
            budget = recipe.budget.model_copy(update={"target_accepted": 10**9, "max_seeds": count})
            run_recipe = recipe.model_copy(update={"budget": budget})
        else:
            run_recipe = recipe
        records = await _bench_one(run_recipe, all_seeds, count, pool, server, args.bracket)
    if pool._engines and not args.skip_shared:
        await bench_shared_prompt(pool._engines[0], records, recipe.roles.solver.samples, args.shared_problems)


async def _bench_one(recipe, all_seeds, count: int, pool: ModelPool, server, bracket: bool) -> list[CallRecord]:
    first = await _pipeline_phase(recipe, all_seeds, count, pool, server)
    raw = await _raw_phase(first.records, pool, server)
    print(f"    {count} seeds: {first.text}")
    print(f"    {count} seeds: {raw.text};  pipeline / raw = {first.rate / raw.rate:.2f}", flush=True)
    if bracket:
        # The host's speed drifts over tens of minutes here (a raw phase alone went from 233 to 303 tok/s by tenth),
        # enough to move one pipeline/raw pair by 0.1. In the order pipeline, raw, raw, pipeline both means sit at
        # the same moment, so a steady drift cancels; the same prompts replayed twice show how far the host moved.
        again = await _raw_phase(first.records, pool, server)
        second = await _pipeline_phase(recipe, all_seeds, count, pool, server)
        print(f"    {count} seeds, raw again: {again.text}; the same prompts ran {again.rate / raw.rate:.2f}x as fast "
              f"as the first time")
        print(f"    {count} seeds, pipeline again: {second.text}")
        pipeline_rate, raw_rate = (first.rate + second.rate) / 2, (raw.rate + again.rate) / 2
        print(f"    {count} seeds, bracketed (pipeline, raw, raw, pipeline): pipeline {pipeline_rate:.1f} tok/s, "
              f"raw {raw_rate:.1f} tok/s (means);  pipeline / raw = {pipeline_rate / raw_rate:.2f}", flush=True)
    return first.records


@dataclass
class Phase:
    rate: float   # generated tokens/s
    text: str
    records: list[CallRecord] = field(default_factory=list)


async def _pipeline_phase(recipe, all_seeds, count: int, pool: ModelPool, server) -> Phase:
    records: list[CallRecord] = []
    engine = pool._engines[0] if pool._engines else None
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(recipe, all_seeds, store_path=Path(tmp) / "bench.duckdb", limit=count, pool=pool,
                        on_call=records.append)
        # Prefix reuse within each phase only: the raw replay must not find the pipeline's prompts cached.
        await _reset_prefix_cache(engine, server)
        preempted0 = await server.preemptions() if server is not None else 0
        watch = _watch(pool)
        await pool.loads()   # a server's counters are read with its load
        hits0, queries0 = watch.prefix_hits, watch.prefix_queries
        sampler = OccupancySampler(pool, server_load=watch if engine is None else None)
        sampling = asyncio.create_task(sampler.run())
        cpu0, split0 = _orchestration_cpu_s(), _cpu_split(server)
        try:
            await runner.run()
        finally:
            sampling.cancel()
        # The engine (its own processes, not reaped until shutdown) is not in this figure: this process (graphs,
        # store, checks) and its finished children (sandbox runs, math-verify workers) are. On a CPU machine
        # every second of it is a second the engine did not get.
        cpu, split = _orchestration_cpu_s() - cpu0, _cpu_split(server, split0)
        errors = _error_reasons(Path(tmp) / "bench.duckdb")
    tally = runner.tally
    pipeline_s, pipeline_tokens = tally.generation_s, tally.completion_tokens
    await pool.loads()
    queries = watch.prefix_queries - queries0
    caching = f"prefix cache {'on' if engine.prefix_caching else 'off'}" if engine is not None else "server's prefix cache"
    prefix = f", {caching}: {(watch.prefix_hits - hits0) / max(queries, 1):.0%} of prompt tokens reused"
    if server is not None:
        prefix += f", {await server.preemptions() - preempted0:.0f} requests preempted"
    rate = pipeline_tokens / pipeline_s
    text = (f"({tally.seeds_started} started): pipeline {pipeline_tokens} tokens in {pipeline_s:.1f} s = "
            f"{rate:.1f} tok/s ({len(records)} calls, {tally.accepted} accepted / {tally.rejected} rejected / "
            f"{tally.errors} errors; {sampler.summary()}{prefix}; orchestration used {cpu:.0f} CPU s = "
            f"{cpu / pipeline_s:.2f} cores{_split_text(split, pipeline_s)}){errors}")
    return Phase(rate, text, records)


def _error_reasons(store: Path, shown: int = 3) -> str:
    """The commonest reasons of the phase's error samples (numbers masked, so one cause is one line): the store
    is temporary, and an error count alone does not say whether the bench's short max_tokens caused it."""
    _, rows = query(store, "SELECT regexp_replace(left(reason, 160), '[0-9]+', 'N', 'g') AS why, count(*) AS n "
                           "FROM samples WHERE status = 'error' GROUP BY why ORDER BY n DESC, why")
    if not rows:
        return ""
    listed = "; ".join(f"{n} x {why}" for why, n in rows[:shown])
    more = sum(n for _, n in rows[shown:])
    return f"\n      errors by reason: {listed}" + (f"; {more} others" if more else "")


async def _raw_phase(records: list[CallRecord], pool: ModelPool, server) -> Phase:
    engine = pool._engines[0] if pool._engines else None
    watch = _watch(pool)
    await _reset_prefix_cache(engine, server)
    raw_hits0, raw_queries0 = await _prefix_counters(pool, watch)
    t0, raw_split0 = time.perf_counter(), _cpu_split(server)
    if engine is not None:
        outputs = await asyncio.gather(*(
            engine.generate(r.prompt, {k: v for k, v in {**r.sampling, "json_schema": r.json_schema}.items()
                                       if v is not None}) for r in records))
        raw_tokens = sum(o[2] for o in outputs)
    else:
        raw_sampler = OccupancySampler(pool, server_load=watch)
        raw_sampling = asyncio.create_task(raw_sampler.run())
        try:
            raw_tokens = await server.replay(records)
        finally:
            raw_sampling.cancel()
    raw_s, raw_split = time.perf_counter() - t0, _cpu_split(server, raw_split0)
    raw_hits, raw_queries = await _prefix_counters(pool, watch)
    rate = raw_tokens / raw_s
    text = (f"raw generate of the same {len(records)} prompts at once: {raw_tokens} tokens in "
            f"{raw_s:.1f} s = {rate:.1f} tok/s ({(raw_hits - raw_hits0) / max(raw_queries - raw_queries0, 1):.0%} of "
            f"prompt tokens reused{'; ' + raw_sampler.summary() if engine is None else ''}"
            f"{_split_text(raw_split, raw_s)})")
    return Phase(rate, text)


def _watch(pool: ModelPool):
    """What reports the engine's prefix-cache counters: the in-process engine's watch, or the server's load."""
    return pool._engines[0].watch if pool._engines else next(iter(pool._servers.values()))


async def _prefix_counters(pool: ModelPool, watch) -> tuple[float, float]:
    """The prefix cache's hit and lookup totals now (a server's are read with its load, at most every 0.25 s)."""
    await asyncio.sleep(0.3)
    await pool.loads()
    return watch.prefix_hits, watch.prefix_queries


async def _reset_prefix_cache(engine, server) -> None:
    if engine is not None:
        await engine._engine.reset_prefix_cache()
    else:
        await server.reset_prefix_cache()


def _orchestration_cpu_s() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _cpu_split(server, since: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """(CPU seconds of the server's processes, of everything else on the machine) so far, or since `since`. On a
    CPU machine both share the cores: what the rest takes (this process, sandbox runs, math-verify helpers, other
    jobs) the engine's threads wait for."""
    if server is None:
        return None
    import psutil

    root = psutil.Process(server.process.pid)
    engine = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            engine += times.user + times.system
    machine = psutil.cpu_times()
    busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    now = (engine, busy - engine)
    return now if since is None else (now[0] - since[0], now[1] - since[1])


def _split_text(split: tuple[float, float] | None, seconds: float) -> str:
    if split is None:
        return ""
    return f"; server's processes {split[0] / seconds:.2f} cores, everything else {split[1] / seconds:.2f} cores"


async def bench_shared_prompt(engine, records: list[CallRecord], k: int, problems: int) -> None:
    """(c) The k solver samples of a problem share their prompt: k requests (the graph's fan-out, prompt reuse left
    to vLLM's prefix cache) against one request with n=k (the prompt computed once by construction)."""
    import uuid

    from vllm.sampling_params import RequestOutputKind, SamplingParams

    firsts = {r.prompt_hash: r for r in records if r.role == "solver" and len(r.prompt) == 2}  # first turns
    prompts = list(firsts.values())[:problems]
    if not prompts:
        return
    tokenizer = engine._tokenizer

    async def generate(record: CallRecord, n: int) -> int:
        text = tokenizer.apply_chat_template(record.prompt, tokenize=False, add_generation_prompt=True)
        params = SamplingParams(n=n, temperature=record.sampling["temperature"], top_p=record.sampling["top_p"],
                                max_tokens=record.sampling["max_tokens"], stop=record.sampling.get("stop"),
                                output_kind=RequestOutputKind.FINAL_ONLY)
        final = None
        async for final in engine._engine.generate(
                {"prompt_token_ids": tokenizer.encode(text, add_special_tokens=False)}, params, uuid.uuid4().hex):
            pass
        return sum(len(output.token_ids) for output in final.outputs)

    figures = []
    for label, n, copies in ((f"{k} requests each", 1, k), (f"one request with n={k} each", k, 1)):
        await engine._engine.reset_prefix_cache()
        hits0, queries0 = engine.watch.prefix_hits, engine.watch.prefix_queries
        t0 = time.perf_counter()
        tokens = sum(await asyncio.gather(*(generate(r, n) for r in prompts for _ in range(copies))))
        elapsed = time.perf_counter() - t0
        reused = (engine.watch.prefix_hits - hits0) / max(engine.watch.prefix_queries - queries0, 1)
        figures.append(f"{label}: {tokens} tokens in {elapsed:.1f} s = {tokens / elapsed:.1f} tok/s "
                       f"({reused:.0%} of prompt tokens from the prefix cache)")
    print(f"(c) the first solver turn of {len(prompts)} problems, k={k} samples each, all at once:")
    for line in figures:
        print(f"    {line}")


class VLLMServer:
    """vLLM's OpenAI-compatible server for the model, started on a local port for the benchmark and stopped
    after it (its whole process group), with the in-process engine's settings."""

    def __init__(self, model: str, port: int):
        self.name = ModelSpec.parse(model).model
        self.port = port
        self.spec = f"openai:http://127.0.0.1:{port}/v1:{self.name}"
        self.process = None

    def __enter__(self) -> VLLMServer:
        import os
        import subprocess
        import sys

        import httpx

        from synthgraph.agents.models import EngineSettings, _configure_vllm_env, resolve_model_path

        settings = EngineSettings(**load_recipe(DEMO)[0].engine.model_dump())
        _configure_vllm_env(settings)
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model_path(self.name),
                   "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
                   "--max-model-len", str(settings.max_model_len), "--max-num-seqs", str(settings.max_num_seqs),
                   "--enforce-eager", "--scheduling-policy", "priority", "--seed", str(settings.seed),
                   "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})]
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="vllm-server-")
        # Dev mode serves /reset_prefix_cache, so each phase starts with a cold cache as in process.
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO", "VLLM_SERVER_DEV_MODE": "1"})
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"vLLM's server exited ({self.process.returncode}):\n{self.log.read()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(2)
        self.__exit__()
        raise SystemExit("vLLM's server did not answer within 600 s")

    def __exit__(self, *exc_info) -> None:
        import os
        import signal

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except Exception:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    async def reset_prefix_cache(self) -> None:
        """Empty the server's prefix cache; it refuses while requests still hold blocks, so try until it takes."""
        import httpx

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as client:
            for _ in range(60):
                response = await client.post("/reset_prefix_cache")
                response.raise_for_status()
                if response.json().get("success"):
                    return
                await asyncio.sleep(1)
        raise SystemExit("vLLM's server kept refusing to reset its prefix cache: the raw figure would be flattered")

    async def preemptions(self) -> float:
        """Requests the server has preempted so far (freed their KV cache to be computed again later)."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        from synthgraph.agents.models import _metric_sum

        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://127.0.0.1:{self.port}/metrics")
        return _metric_sum(text_string_to_metric_families(response.text), "vllm:num_preemptions") or 0.0

    async def replay(self, records: list[CallRecord]) -> int:
        """Completion tokens of the records' prompts sent to the server all at once."""
        return await replay(f"http://127.0.0.1:{self.port}/v1", self.name, records)


async def replay(base_url: str, name: str, records: list[CallRecord]) -> int:
    """Completion tokens of the records' prompts sent to an OpenAI-compatible server all at once, each with the
    sampling (and the structured-output grammar) it was sent with."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=3600, max_retries=0)
    fields = ("temperature", "top_p", "max_tokens", "seed", "stop")

    def request(record: CallRecord) -> dict:
        sent = {k: record.sampling[k] for k in fields if record.sampling.get(k) is not None}
        if record.json_schema is not None:   # the same grammar as the pipeline's structured outputs
            sent["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": record.json_schema}}
        return sent

    replies = await asyncio.gather(*(
        client.chat.completions.create(model=name, messages=r.prompt, **request(r)) for r in records))
    await client.close()
    return sum(reply.usage.completion_tokens for reply in replies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-concurrency", type=int, default=128,
                        help="(b): the upper bound on seeds in flight (the only pace with --pacing fixed)")
    parser.add_argument("--model", help="(b): model spec; default: the demo recipe's")
    parser.add_argument("--model-seeds", type=int, nargs="+", default=[8, 32, 128],
                        help="(b): seed counts, each a run of its own on the same engine")
    parser.add_argument("--model-samples", type=int, help="(b): solver samples per problem (default: the demo's)")
    parser.add_argument("--max-tokens", type=int, help="(b): max_tokens of every role (default: the demo's)")
    parser.add_argument("--backend", nargs="+", choices=["inprocess", "openai"], default=["inprocess"],
                        help="(b): in-process engine, and/or vLLM's OpenAI server started on --port")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--skip-shared", action="store_true", help="skip (c), k requests vs one with n=k")
    parser.add_argument("--shared-problems", type=int, default=16, help="(c): problems (from the last seed count)")
    parser.add_argument("--bracket", action="store_true",
                        help="(b): per seed count, pipeline, raw, raw again, pipeline again; the ratio of the means "
                             "cancels a steady drift of the host's speed (twice as long)")
    parser.add_argument("--pacing", choices=["engine", "fixed"], default="engine",
                        help="(b): admission paced by the engine's queue, or only by --concurrency (as before)")
    args = parser.parse_args()
    bench_model(args)


if __name__ == "__main__":
    main()
