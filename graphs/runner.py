"""Drives a compiled graph over many seeds concurrently and hands every finished seed to the store's writer.

Resume is by seed: a seed is written whole (samples, turns, verdicts, lineage) in one transaction together with
its `done` mark, so after a kill the same command skips what was written and redoes only what was in flight.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synthgraph.agents.models import CallLog, CallRecord, ModelPool, current_call_log
from synthgraph.graphs.family import family
from synthgraph.graphs.cleaning import CleaningTally, SampleCleaner
from synthgraph.graphs.recipe import RecipeBase, SeedBase
from synthgraph.store.db import DEFAULT_STORE, Store, StoreWriter
from synthgraph.store.rows import AgentCallRow, RunRow, SampleRow, SeedOutcome, SeedRow, stable_id


@dataclass
class RunTally:
    """Live counters for the progress display and the closing summary."""

    seeds_total: int = 0
    seeds_skipped: int = 0
    seeds_done: int = 0
    seeds_failed: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    first_call_at: float | None = None
    started_at: float = field(default_factory=time.perf_counter)
    load_s: float = 0.0
    cleaning: CleaningTally = field(default_factory=CleaningTally)

    def add_call(self, record: CallRecord) -> None:
        self.calls += 1
        self.prompt_tokens += record.prompt_tokens or 0
        self.completion_tokens += record.completion_tokens or 0
        if self.first_call_at is None:
            self.first_call_at = time.perf_counter() - record.latency_s

    def add_samples(self, samples: list[SampleRow]) -> None:
        self.accepted += sum(s.status == "accepted" for s in samples)
        self.rejected += sum(s.status == "rejected" for s in samples)
        self.errors += sum(s.status == "error" for s in samples)

    @property
    def generation_s(self) -> float:
        return 0.0 if self.first_call_at is None else time.perf_counter() - self.first_call_at

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.generation_s if self.generation_s > 0 else 0.0


@dataclass
class RunResult:
    run_id: str
    store_path: Path
    tally: RunTally
    budget_exhausted: bool = False


class Runner:
    def __init__(
        self,
        recipe: RecipeBase,
        seeds: list[SeedBase],
        *,
        store_path: Path | None = None,
        recipe_path: Path | None = None,
        limit: int | None = None,
        retry_errors: bool = False,
        pool: ModelPool | None = None,
        on_update: Callable[[RunTally], None] | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
    ):
        self.recipe = recipe
        self.seeds = seeds
        self.store_path = Path(store_path or recipe.store or DEFAULT_STORE)
        self.recipe_path = recipe_path
        self.limit = limit
        self.retry_errors = retry_errors
        self.pool = pool
        self.on_update = on_update or (lambda tally: None)
        self.on_call = on_call or (lambda record: None)
        self.run_id = recipe.run_id(seeds)
        self.family = family(recipe.graph)
        self.graph = self.family.graph_for(recipe)
        self.tally = RunTally()

    async def run(self) -> RunResult:
        selected = self.seeds[: self.limit] if self.limit is not None else self.seeds
        store = Store(self.store_path)
        try:
            store.register_run(
                RunRow(run_id=self.run_id, name=self.recipe.name, graph=self.recipe.graph,
                       recipe=self.recipe.model_dump(mode="json"),
                       recipe_path=str(self.recipe_path) if self.recipe_path else None),
                [SeedRow(run_id=self.run_id, seed_id=s.seed_id, position=i, payload=s.model_dump(exclude_none=True))
                 for i, s in enumerate(selected)],
            )
            unfinished = store.unfinished_seeds(self.run_id, retry_errors=self.retry_errors)
            pending = [s for s in selected if s.seed_id in unfinished]
            # Decontamination and dedup run in the writer's order against what is stored (graphs/cleaning.py).
            self.cleaner = SampleCleaner.for_run(self.recipe, store, self.run_id)
            self.tally.cleaning = self.cleaner.tally
            pending = self.cleaner.skip_contaminated_seeds(pending, store)
            self.tally.seeds_total = len(selected)
            self.tally.seeds_skipped = len(selected) - len(pending)
            self.on_update(self.tally)
            budget_exhausted = False
            if pending:
                budget_exhausted = await self._generate(pending, store)
            return RunResult(self.run_id, self.store_path, self.tally, budget_exhausted)
        finally:
            store.close()

    async def _generate(self, pending: list[SeedBase], store: Store) -> bool:
        owns_pool = self.pool is None
        pool = self.pool or ModelPool(self.recipe.engine, max_attempts=self.recipe.max_model_attempts)
        context = self.family.make_context(self.recipe, pool, store)
        try:
            t0 = time.perf_counter()
            await pool.start()
            self.tally.load_s = time.perf_counter() - t0
            slots = asyncio.Semaphore(self.recipe.concurrency)
            budget = self.recipe.budget.max_tokens
            exhausted = False
            async with StoreWriter(store) as writer:

                async def one(seed: SeedBase) -> None:
                    nonlocal exhausted
                    async with slots:
                        if budget is not None and self.tally.prompt_tokens + self.tally.completion_tokens >= budget:
                            exhausted = True
                            return
                        outcome = self.cleaner.check(await self._run_seed(seed, context))
                        await writer.put(outcome)
                        self.tally.add_samples(outcome.samples)
                        if outcome.status == "done":
                            self.tally.seeds_done += 1
                        else:
                            self.tally.seeds_failed += 1
                        self.on_update(self.tally)

                await asyncio.gather(*(one(seed) for seed in pending))
            return exhausted
        finally:
            if owns_pool:
                pool.shutdown()

    async def _run_seed(self, seed: SeedBase, context) -> SeedOutcome:
        log = CallLog(on_call=self._on_call)
        current_call_log.set(log)  # this coroutine runs in its own task (gather), so the log is this seed's
        seed_id = seed.seed_id
        try:
            state = await self.graph.ainvoke(self.family.initial_state(seed), context=context)
            samples, messages, verdicts, sample_ids = self.family.to_rows(
                state, run_id=self.run_id, seed_id=seed_id, context=context)
            status, error = "done", None
        except Exception as exc:  # a bug or a dead engine must cost one seed, not the run
            error = f"{type(exc).__name__}: {exc}"
            sample_id = stable_id(self.run_id, seed_id, "seed_error")
            samples = [SampleRow(sample_id=sample_id, run_id=self.run_id, seed_id=seed_id,
                                 group_id=stable_id(self.run_id, seed_id), kind="seed_error", status="error",
                                 reason=error, payload={"traceback": traceback.format_exc()[-4000:]})]
            messages, verdicts, sample_ids, status = [], [], {}, "error"
        calls = [self._call_row(r, seed_id, sample_ids.get(r.subject)) for r in log.records]
        return SeedOutcome(run_id=self.run_id, seed_id=seed_id, status=status, error=error, samples=samples,
                           messages=messages, verdicts=verdicts, agent_calls=calls)

    def _on_call(self, record: CallRecord) -> None:
        self.tally.add_call(record)
        self.on_call(record)
        self.on_update(self.tally)

    def _call_row(self, record: CallRecord, seed_id: str, sample_id: str | None) -> AgentCallRow:
        return AgentCallRow(**record.model_dump(exclude={"subject"}), run_id=self.run_id, seed_id=seed_id,
                            sample_id=sample_id)
