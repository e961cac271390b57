"""Drives a compiled graph over many seeds concurrently and hands every finished seed to the store's writer.

Resume is by seed: a seed is written whole (samples, turns, verdicts, lineage) in one transaction together with
its `done` mark, so after a kill the same command skips what was written. A seed that was in flight resumes from
its last finished node: LangGraph checkpoints each in-flight seed in `<store>.checkpoints.sqlite`, and a seed's
checkpoints are dropped once the seed is in the store. Seeds are not checkpointed while the model answers in under
10 ms on average (a fake, a cache): then a killed seed costs less to redo than checkpoints cost every seed. (The
lineage of the calls made before a kill is lost with the process: a resumed seed's `agent_calls` hold only the
calls made after it resumed.)

Admission is one seed at a time, paced by the model engines' queues where they report one (a new seed starts
while every engine has room for another request, so the continuous batch stays full) and at most `concurrency`
in flight (the memory guard; the only pace for back ends that report no load), until the seeds run out or
something says stop:
the target of accepted samples is met, a budget (tokens, seconds, seeds) is spent, SIGINT/SIGTERM arrives, or the
model server is down. Then no new seed starts and the ones in flight finish (after a signal, within a grace
period; the rest are abandoned and stay pending).

A seed runs here (graphs/seed_execution.py, over one model pool) or, with `ray=`, on Ray workers that each own an
engine (graphs/ray_workers.py); either way this process admits, cleans and writes, so resume is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from synthgraph.agents.models import CallRecord, ModelPool, ModelServerDown, SeedRequests, current_seed
from synthgraph.graphs.checkpoints import BatchedSqliteSaver
from synthgraph.graphs.cleaning import CleaningTally, SampleCleaner
from synthgraph.graphs.family import family
from synthgraph.graphs.recipe import RecipeBase, SeedBase
from synthgraph.graphs.seed_execution import SeedAbandoned, SeedExecutor
from synthgraph.store.db import DEFAULT_STORE, Store, StoreWriter, checkpoint_path
from synthgraph.store.rows import RunRow, SampleRow, SeedOutcome, SeedRow

if TYPE_CHECKING:
    from synthgraph.graphs.ray_workers import RayOptions


@dataclass
class RunTally:
    """Live counters for the progress display and the closing summary."""

    seeds_total: int = 0
    seeds_skipped: int = 0
    seeds_crashed_before: int = 0   # of the skipped: crashed in an earlier run, left for --retry-errors
    seeds_started: int = 0
    seeds_done: int = 0
    seeds_failed: int = 0
    seeds_abandoned: int = 0   # in flight when the run stopped: left pending, resumed by the next run
    seeds_resumed: int = 0     # picked up from a checkpoint mid-seed
    seeds_requeued: int = 0    # on Ray: in flight on a worker that died, so run again on a live one
    workers: int = 0           # on Ray: the workers the run started with
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    model_s: float = 0.0       # summed latency of the calls
    first_call_at: float | None = None
    started_at: float = field(default_factory=time.perf_counter)
    load_s: float = 0.0
    cleaning: CleaningTally = field(default_factory=CleaningTally)
    # Calls sampled at temperature > 0 with a prompt asked before (the k samples of a problem, a retry), and how
    # many of them got the prompt's first answer word for word: a server that decodes greedily whatever the
    # temperature (transformers serve without "do_sample") gives every one of them the same text.
    sampled_repeats: int = 0
    identical_repeats: int = 0
    _first_answers: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def add_call(self, record: CallRecord) -> None:
        self.calls += 1
        self.model_s += record.latency_s
        self.prompt_tokens += record.prompt_tokens or 0
        self.completion_tokens += record.completion_tokens or 0
        if self.first_call_at is None:
            self.first_call_at = time.perf_counter() - record.latency_s
        if record.completion and (record.sampling.get("temperature") or 0) > 0:
            key, answer = (record.model, record.prompt_hash), hash(record.completion)
            first = self._first_answers.get(key)
            if first is None:
                if len(self._first_answers) >= GREEDY_PROMPTS_KEPT:
                    # A prompt's samples and retries come close together (a seed's calls): the memory stays bounded
                    # on a run of millions of seeds.
                    self._first_answers.clear()
                self._first_answers[key] = answer
            else:
                self.sampled_repeats += 1
                self.identical_repeats += first == answer

    @property
    def greedy_warning(self) -> str | None:
        """What to tell the user when nearly every sampled repeat of a prompt was its first answer again."""
        if self.sampled_repeats < GREEDY_MIN_REPEATS or self.identical_repeats < GREEDY_SHARE * self.sampled_repeats:
            return None
        return (f"{self.identical_repeats} of {self.sampled_repeats} calls sampled at temperature > 0 for a prompt "
                "asked before got its first answer word for word: the model server seems to decode greedily "
                "(transformers serve samples only if the model folder's generation_config.json says "
                '"do_sample": true)')

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
class Stop:
    """Why the run stopped admitting seeds before they ran out."""

    kind: str       # target, tokens, seconds, seeds, SIGINT, SIGTERM, server, failure (raised after the stop)
    message: str


BUDGETS = ("tokens", "seconds", "seeds")
GREEDY_MIN_REPEATS, GREEDY_SHARE, GREEDY_PROMPTS_KEPT = 8, 0.8, 4096
CHECKPOINT_CALLS_OVER_S = 0.01
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells report it
EXIT_CRASHED, EXIT_SERVER_DOWN = 1, 3
ENGINE_POLL_S = 0.05  # how often a full engine is looked at again: a decode step on CPU takes ~0.1-1 s


@dataclass
class RunResult:
    run_id: str
    store_path: Path
    tally: RunTally
    stop: Stop | None = None
    crashed: list[tuple[str, str | None]] = field(default_factory=list)  # every crashed seed of the run, earlier too
    target: int | None = None
    accepted_total: int = 0   # accepted samples of the run in the store, earlier runs included
    target_missed: str | None = None  # why the target was not reached although nothing stopped the run
    pending: int = 0          # seeds of the run left pending in the store (a rerun starts or resumes them)
    # (run id, seeds) of an earlier run of this recipe (name and graph) that had done some of this new run's seeds:
    # a changed recipe or seed list is a new run, and its seeds start afresh
    earlier: tuple[str, int] | None = None

    @property
    def budget_exhausted(self) -> bool:
        return self.stop is not None and self.stop.kind in BUDGETS

    @property
    def exit_code(self) -> int:
        """Non-zero when the data is not what was asked for: interrupted, a dead server, crashed seeds."""
        if self.stop is not None and self.stop.kind in SIGNAL_EXIT:
            return SIGNAL_EXIT[self.stop.kind]
        if self.stop is not None and self.stop.kind == "server":
            return EXIT_SERVER_DOWN
        return EXIT_CRASHED if self.crashed else 0


class Admission:
    """Decides whether another seed may start: the first reason to stop wins and holds for the rest of the run."""

    def __init__(self, budget, tally: RunTally, *, accepted_before: int):
        self.budget = budget
        self.tally = tally
        self.accepted_before = accepted_before
        self.stop: Stop | None = None
        self.changed = asyncio.Event()  # a seed finished or a stop was called: admission looks again

    def halt(self, kind: str, message: str) -> None:
        if self.stop is None:
            self.stop = Stop(kind, message)
        self.changed.set()

    @property
    def accepted(self) -> int:
        return self.accepted_before + self.tally.accepted

    def may_start(self) -> bool:
        budget, tally = self.budget, self.tally
        tokens = tally.prompt_tokens + tally.completion_tokens
        if budget.target_accepted is not None and self.accepted >= budget.target_accepted:
            self.halt("target", f"target reached: {self.accepted} accepted samples stored "
                                f"(target {budget.target_accepted})")
        elif budget.max_tokens is not None and tokens >= budget.max_tokens:
            self.halt("tokens", f"token budget reached: {tokens} tokens of {budget.max_tokens}")
        elif budget.max_seconds is not None and time.perf_counter() - tally.started_at >= budget.max_seconds:
            self.halt("seconds", f"time budget reached: {budget.max_seconds:g} s")
        elif budget.max_seeds is not None and tally.seeds_started >= budget.max_seeds:
            self.halt("seeds", f"seed budget reached: {tally.seeds_started} seeds started")
        return self.stop is None

    def covered(self, in_flight: int) -> bool:
        """Whether the seeds in flight can be expected to meet the target: then wait for them rather than start
        more, so a small target does not run a whole batch of seeds too many. The expectation is the accepted
        samples per finished seed so far (one per seed before any has finished)."""
        target = self.budget.target_accepted
        if target is None or in_flight == 0:
            return False
        finished = self.tally.seeds_done + self.tally.seeds_failed
        per_seed = self.tally.accepted / finished if finished else 1.0
        return self.accepted + in_flight * per_seed >= target


@contextlib.contextmanager
def fewer_collections():
    """Python's cyclic garbage collector tuned for a run. Graph instances leave reference cycles by the hundred
    per seed (LangGraph's tasks and futures), so at the default thresholds the collector runs every 700
    allocations and keeps walking everything the process already held (models, seeds, libraries): half the CPU
    of a fast run. What exists when the run starts is frozen out of the walks, and the young generation is
    collected every 50,000 allocations; cycles are still collected, in fewer, larger sweeps."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _checkpoint_types() -> set[tuple[str, str]]:
    """The classes a checkpoint may bring back: LangChain's messages and synthgraph's own (the states hold its
    pydantic models). An explicit list, so the checkpointer's deserializer never builds anything else."""
    from langchain_core import messages

    allowed = {(cls.__module__, cls.__name__) for cls in vars(messages).values() if isinstance(cls, type)}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "synthgraph":
            allowed |= {(value.__module__, value.__name__) for value in list(vars(module).values())
                        if isinstance(value, type) and value.__module__.split(".")[0] == "synthgraph"}
    return allowed


class SeedCheckpoints:
    """LangGraph checkpoints of the seeds in flight, so a killed run resumes a seed from its last finished node.

    One SQLite file beside the store; a seed's thread is `RUN:SEED` and is deleted once the seed is in the store.
    The file is removed when no thread is left in it.
    """

    def __init__(self, store_path: Path):
        self.path = checkpoint_path(store_path)
        self._conn: aiosqlite.Connection | None = None
        self.saver: BatchedSqliteSaver | None = None

    async def __aenter__(self) -> SeedCheckpoints:
        self._conn = await aiosqlite.connect(str(self.path))
        self.saver = BatchedSqliteSaver(self._conn, self.path,
                                        serde=JsonPlusSerializer(allowed_msgpack_modules=_checkpoint_types()))
        await self.saver.__aenter__()
        return self

    async def __aexit__(self, *exc_info) -> None:
        assert self._conn is not None and self.saver is not None
        await self.saver.__aexit__(*exc_info)
        async with self._conn.execute("SELECT count(*) FROM checkpoints") as cursor:
            left = (await cursor.fetchone())[0]
        await self._conn.close()
        if left == 0:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def attach(self, graph):
        """The family's compiled graph, checkpointing into this file (its own config, e.g. recursion limit, kept)."""
        return graph.copy(update={"checkpointer": self.saver})

    @staticmethod
    def config(run_id: str, seed_id: str) -> dict:
        return {"configurable": {"thread_id": f"{run_id}:{seed_id}"}}

    def may_hold(self, run_id: str, seed_id: str) -> bool:
        """Whether the seed may have checkpoints: false for a seed starting afresh, which then skips the lookup."""
        assert self.saver is not None
        return self.saver.holds(self.config(run_id, seed_id)["configurable"]["thread_id"])

    async def forget(self, run_id: str, seed_ids: list[str]) -> None:
        assert self.saver is not None
        for seed_id in seed_ids:
            await self.saver.adelete_thread(f"{run_id}:{seed_id}")


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
        handle_signals: bool = False,
        grace_s: float = 10.0,
        checkpoints: bool = True,
        ray: RayOptions | None = None,
    ):
        self.recipe = recipe
        self.seeds = seeds
        self.store_path = Path(store_path or (recipe.resolve(recipe.store) if recipe.store else DEFAULT_STORE))
        self.recipe_path = recipe_path
        self.limit = limit
        self.retry_errors = retry_errors
        self.pool = pool
        self.on_update = on_update or (lambda tally: None)
        self.on_call = on_call or (lambda record: None)
        self.handle_signals = handle_signals
        self.grace_s = grace_s
        self.use_checkpoints = checkpoints
        self.ray = ray  # spread the seeds over Ray workers (graphs/ray_workers.py); None: run them here
        self.run_id = recipe.run_id(seeds)
        self.family = family(recipe.graph)
        self.tally = RunTally()
        self.admission: Admission | None = None
        self._in_flight: dict[asyncio.Task, SeedRequests] = {}  # the seeds running, and what they asked of engines
        self._made_positions: dict[str, int] = {}  # seeds made by cycling the list: their place in the run
        self._recent_accepted: deque[int] = deque()  # accepted samples of the last seeds to finish
        self._failure: BaseException | None = None  # what killed a seed task outside its graph (the writer)
        self._call_update_at = 0.0

    async def run(self) -> RunResult:
        selected = self.seeds[: self.limit] if self.limit is not None else self.seeds
        self.tally.started_at = time.perf_counter()  # the time budget counts from here
        store = Store(self.store_path)
        loop = asyncio.get_running_loop()
        try:
            run_row = RunRow(run_id=self.run_id, name=self.recipe.name, graph=self.recipe.graph,
                             recipe=self.recipe.model_dump(mode="json"),
                             recipe_path=str(self.recipe_path) if self.recipe_path else None)
            earlier = (None if store.has_run(self.run_id)
                       else store.earlier_run_of(run_row, [s.seed_id for s in selected]))
            store.register_run(
                run_row, [SeedRow(run_id=self.run_id, seed_id=s.seed_id, position=i,
                                  payload=s.model_dump(exclude_none=True)) for i, s in enumerate(selected)])
            finished = store.finished_seeds(self.run_id, retry_errors=self.retry_errors)
            crashed_before = set() if self.retry_errors else {seed for seed, _ in store.crashed_seeds(self.run_id)}
            # Decontamination and dedup run in the writer's order against what is stored (graphs/cleaning.py);
            # a contaminated seed is written as done before any model call.
            self.cleaner = SampleCleaner.for_run(self.recipe, store, self.run_id)
            self.tally.cleaning = self.cleaner.tally
            pending = [s for s in selected if s.seed_id not in finished]
            clean = {s.seed_id for s in self.cleaner.skip_contaminated_seeds(pending, store)}
            finished |= {s.seed_id for s in pending if s.seed_id not in clean}
            self.tally.seeds_total = len(selected)
            self.tally.seeds_skipped = sum(s.seed_id in finished for s in selected)
            self.tally.seeds_crashed_before = sum(s.seed_id in crashed_before for s in selected)
            # A target cycles the generative seeds; a copy of a contaminated seed would carry the benchmark's text.
            contaminated = self.cleaner.contaminated_seeds(store)
            generative = [(position, s) for position, s in enumerate(selected)
                          if s.generative and s.seed_id not in contaminated]
            self._recent_accepted = deque(maxlen=max(1, len(generative)))
            self.admission = Admission(self.recipe.budget, self.tally,
                                       accepted_before=store.accepted_samples(self.run_id))
            if self.handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, self.interrupt, sig.name)
            self.on_update(self.tally)
            seeds = self._seed_source(selected, finished, generative)
            if self.admission.may_start():
                first = next(seeds, None)
                if first is not None:
                    await self._generate(first, seeds, store)
            return RunResult(self.run_id, self.store_path, self.tally, self.admission.stop,
                             crashed=store.crashed_seeds(self.run_id), target=self.recipe.budget.target_accepted,
                             accepted_total=self.admission.accepted, target_missed=self._target_missed(),
                             pending=store.pending_seeds(self.run_id), earlier=earlier)
        finally:
            if self.handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            store.close()

    def interrupt(self, signame: str = "SIGINT") -> None:
        """SIGINT/SIGTERM: stop admitting; in-flight seeds get `grace_s` to finish, then are abandoned (they stay
        pending, their checkpoints kept). A second signal abandons them at once."""
        assert self.admission is not None
        loop = asyncio.get_running_loop()
        if self._interrupted():
            self._abandon_in_flight()
            if self.handle_signals:  # a third signal gets Python's default: e.g. while a model is still loading
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            return
        self.admission.stop = None  # a signal outranks a budget: the exit code must say the run was interrupted
        self.admission.halt(signame, f"interrupted by {signame}")
        loop.call_later(self.grace_s, self._abandon_in_flight)

    def _abandon_in_flight(self) -> None:
        for task in list(self._in_flight):
            task.cancel()

    def _seed_source(self, selected: list[SeedBase], finished: set[str],
                     generative: list[tuple[int, SeedBase]]) -> Iterator[SeedBase]:
        """The seeds to run, in order: the seed list, then — when a target asks for more — further passes over the
        `generative` ones (position in the list, seed) as new seeds (`ID#2`, ...), until the last pass's worth of
        finished seeds accepted nothing (another pass would not either)."""
        yield from (s for s in selected if s.seed_id not in finished)
        if self.recipe.budget.target_accepted is None or not generative:
            return
        for round in range(2, sys.maxsize):
            for position, seed in generative:
                again = seed.again(round, len(selected))
                if again.seed_id in finished:
                    continue
                if len(self._recent_accepted) == len(generative) and not any(self._recent_accepted):
                    return
                self._made_positions[again.seed_id] = (round - 1) * len(selected) + position
                self.tally.seeds_total += 1
                yield again

    def _target_missed(self) -> str | None:
        target = self.recipe.budget.target_accepted
        if target is None or self.admission.accepted >= target or self.admission.stop is not None:
            return None
        if not any(s.generative for s in self.seeds[: self.limit]):
            return (f"target not reached: the seed list ran out at {self.admission.accepted} accepted samples of "
                    f"{target} (its seeds pose fixed tasks, so they are not run again)")
        return (f"target not reached: the last {len(self._recent_accepted)} seeds run accepted nothing "
                f"({self.admission.accepted} of {target})")

    async def _generate(self, first: SeedBase, seeds: Iterator[SeedBase], store: Store) -> None:
        if self.ray is not None:
            await self._generate_on_ray(first, seeds, store)
            return
        owns_pool = self.pool is None
        pool = self.pool or ModelPool(self.recipe.engine, max_attempts=self.recipe.max_model_attempts)
        context = self.family.make_context(self.recipe, pool, store)
        admission = self.admission
        try:
            t0 = time.perf_counter()
            try:
                await pool.start()
            except ModelServerDown as exc:
                admission.halt("server", str(exc))
                return
            except Exception:
                if self._interrupted():
                    return  # the engine's processes died of the same Ctrl-C while loading: the run is interrupted
                raise
            self.tally.load_s = time.perf_counter() - t0
            checkpoints = SeedCheckpoints(self.store_path) if self.use_checkpoints else None
            async with contextlib.AsyncExitStack() as stack:
                stack.enter_context(fewer_collections())
                graph = unchecked_graph = self.family.graph_for(self.recipe)
                if checkpoints is not None:
                    await stack.enter_async_context(checkpoints)
                    graph = checkpoints.attach(graph)

                async def written(outcomes: list[SeedOutcome]) -> None:
                    if checkpoints is not None:
                        await checkpoints.forget(self.run_id, [o.seed_id for o in outcomes])

                executor = SeedExecutor(self.run_id, self.family, graph, context, checkpoints=checkpoints,
                                        unchecked_graph=unchecked_graph, checkpoints_pay=self._checkpoints_pay,
                                        on_call=self._on_call, on_resumed=self._resumed, stopping=self._interrupted)
                await self._admit(first, seeds, StoreWriter(store, on_written=written), executor.run,
                                  slots=self.recipe.concurrency, pool=pool)
            if self._failure is not None:
                raise self._failure
        finally:
            if owns_pool:
                pool.shutdown()

    async def _generate_on_ray(self, first: SeedBase, seeds: Iterator[SeedBase], store: Store) -> None:
        """The seeds run on Ray workers, each with its own engine; this process stays the store's only writer.
        A seed in flight on a worker that dies is redone from its start (checkpoints are local to a machine)."""
        from synthgraph.graphs.ray_workers import RayWorkers  # Ray is imported only when a run asks for it

        # What the family's context reads from the store, copied for the workers before any seed is written.
        store_rows = store.rows(self.family.store_reads(self.recipe, store)) if self.family.store_reads else {}
        workers = RayWorkers(self.ray, self.recipe, self.run_id, store_rows=store_rows, on_call=self._on_call,
                             on_requeued=self._requeued)
        try:
            t0 = time.perf_counter()
            try:
                await workers.start()
            except ModelServerDown as exc:
                self.admission.halt("server", str(exc))
                return
            self.tally.load_s = time.perf_counter() - t0
            self.tally.workers = len(workers.workers)
            await self._admit(first, seeds, StoreWriter(store), workers.run, slots=workers.slots)
            if self._failure is not None:
                raise self._failure
        finally:
            workers.shutdown()

    async def _admit(self, first: SeedBase, seeds: Iterator[SeedBase], writer: StoreWriter,
                     execute: Callable[[SeedBase], Awaitable[SeedOutcome]], *, slots: int,
                     pool: ModelPool | None = None) -> None:
        """Start seeds while a slot is free (and `pool`'s engines have room) and nothing says stop; each is run by
        `execute` and its outcome handed to the writer. Returns when every seed started has finished (or was
        abandoned)."""
        admission = self.admission
        async with writer:
            seeds = itertools.chain([first], seeds)
            while True:
                # A seed is drawn only when a slot is free, so the source decides on what has finished.
                await self._wait_for_slot(pool, slots)
                if not admission.may_start() or (seed := next(seeds, None)) is None:
                    break
                # The seed's requests are scheduled by its admission order (earlier seeds first), and the
                # engine's load counts it as starting until its first request arrives.
                requests = SeedRequests(priority=self.tally.seeds_started)
                self.tally.seeds_started += 1
                token = current_seed.set(requests)
                task = asyncio.create_task(self._seed_task(seed, execute, writer))
                current_seed.reset(token)
                self._in_flight[task] = requests
                task.add_done_callback(self._finished)
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _wait_for_slot(self, pool: ModelPool | None, slots: int) -> None:
        """Until another seed may start: below `slots` seeds in flight (the memory guard), the target not
        already covered by them, and — where the model back ends report their load — every engine with room
        for another request (none waiting, a free slot counting the admitted seeds that have not sent a request
        yet). So the engine's queue paces admission: seeds between calls (in the sandbox, fanning out) are
        made up for by new ones, and a full batch holds new ones back. Load is polled every ENGINE_POLL_S."""
        admission = self.admission
        while admission.stop is None:
            engine_full = False
            if len(self._in_flight) < slots and not admission.covered(len(self._in_flight)):
                starting = sum(r.sent == 0 for r in self._in_flight.values())
                loads = await pool.loads() if pool is not None else []
                engine_full = not all(load.has_room(starting) for load in loads)
                if not engine_full:
                    return
            admission.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(admission.changed.wait(), ENGINE_POLL_S if engine_full else None)

    def _finished(self, task: asyncio.Task) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            # The writer died (disk full, a bug): stop generating data that could not be saved, then raise it.
            self._failure = task.exception()
            self.admission.halt("failure", f"{type(self._failure).__name__}: {self._failure}")
        self.admission.changed.set()
        self.on_update(self.tally)

    async def _seed_task(self, seed: SeedBase, execute: Callable[[SeedBase], Awaitable[SeedOutcome]],
                         writer: StoreWriter) -> None:
        try:
            outcome = await execute(seed)
        except (asyncio.CancelledError, SeedAbandoned):
            self.tally.seeds_abandoned += 1
            return
        except ModelServerDown as exc:
            self.tally.seeds_abandoned += 1
            self.admission.halt("server", str(exc))
            return
        position = self._made_positions.get(seed.seed_id)
        if position is not None:
            outcome.seed = SeedRow(run_id=self.run_id, seed_id=seed.seed_id, position=position,
                                   payload=seed.model_dump(exclude_none=True))
        outcome = self.cleaner.check(outcome)
        await writer.put(outcome)
        self.tally.add_samples(outcome.samples)
        self._recent_accepted.append(sum(s.status == "accepted" for s in outcome.samples))
        if outcome.status == "done":
            self.tally.seeds_done += 1
        else:
            self.tally.seeds_failed += 1

    def _interrupted(self) -> bool:
        return self.admission.stop is not None and self.admission.stop.kind in SIGNAL_EXIT

    def _resumed(self) -> None:
        self.tally.seeds_resumed += 1

    def _requeued(self, seed_id: str) -> None:
        self.tally.seeds_requeued += 1
        self.on_update(self.tally)

    def _checkpoints_pay(self) -> bool:
        """Whether a new seed should be checkpointed step by step. Checkpoints save model work from a kill; they
        cost ~1 ms of the event loop per seed. When the run's model calls come back in under
        `CHECKPOINT_CALLS_OVER_S` on average (a fake, a cache), a killed seed is cheaper to redo than every seed
        is to checkpoint, so seeds start without them; with a real engine every seed has them."""
        tally = self.tally
        return tally.calls < 32 or tally.model_s / tally.calls >= CHECKPOINT_CALLS_OVER_S

    def _on_call(self, record: CallRecord) -> None:
        self.tally.add_call(record)
        self.on_call(record)
        # A display need not hear of every call (hundreds a second on a fast engine): ten times a second is
        # what the eye sees, and every finished seed updates it anyway.
        now = time.perf_counter()
        if now - self._call_update_at >= 0.1:
            self._call_update_at = now
            self.on_update(self.tally)

