"""Seeds spread over Ray workers, each owning its model engine; the driver (graphs/runner.py) stays the store's
only writer.

A worker is a Ray actor (`SeedWorker`) that builds the recipe's model pool and the family's context once — an
in-process vLLM engine of its own (on a GPU cluster: one per GPU, or per `tensor_parallel_size` GPUs), or a share of
an OpenAI-compatible server — and runs seeds concurrently on its event loop (`max_concurrency`), each through the
same `SeedExecutor` as a local run. It sends each finished seed back whole, as a `SeedOutcome`; the driver cleans
it (dedup, decontamination) and writes it, so resume, dedup and lineage are those of a run on one machine. A family
whose context reads the store (a corpus to search, earlier runs' instructions) gets a copy of those rows in a store
of the worker's own, in memory (`Family.store_reads`), taken as the run starts.

Backpressure: the driver keeps at most `recipe.concurrency` seeds in flight per live worker. A worker that dies
(its process killed, its node gone) loses only its seeds in flight: Ray restarts it (`max_restarts`) and the
driver runs those seeds again — on a live worker, or on the restarted one once its engine is up. LangGraph's
per-seed checkpoints live on the machine that ran the seed, so a seed redone here starts from its beginning.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthgraph.agents.models import ModelPool, ModelServerDown
from synthgraph.graphs.family import family
from synthgraph.graphs.recipe import RecipeBase, SeedBase
from synthgraph.graphs.seed_execution import SeedExecutor, error_sample
from synthgraph.store.db import Store
from synthgraph.store.rows import AgentCallRow, SeedOutcome


DEAD_FOR_GOOD_S = 60.0  # a worker reported dead this long (its node gone, no room to restart it) is given up


class RayOptions(BaseModel):
    """Where and how wide a run spreads over Ray."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field("auto", description="HOST:PORT of the cluster's head (as `ray start --head` prints it), "
                                             "ray://HOST:PORT (Ray Client), auto (the cluster this machine belongs "
                                             "to, or RAY_ADDRESS), or local (a Ray of its own on this machine)")
    workers: int | None = Field(None, ge=1, description="workers (engines) to start; default: one per node, or on "
                                                        "a GPU cluster one per tensor_parallel_size GPUs")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs per worker's engine (vLLM's setting)")
    max_restarts: int = Field(3, ge=-1, description="times Ray restarts a worker that died (-1: without end)")
    seed_attempts: int = Field(3, ge=1, le=10, description="times a seed is sent to a worker before it is recorded "
                                                          "as crashed (each try's worker died under it)")


class RayUnavailable(RuntimeError):
    """Ray cannot be used as asked (not installed, no cluster at the address, a worker that cannot start): one line
    that says what to do."""


class RayWorkersLost(ModelServerDown):
    """Every worker died and Ray will restart none of them: the run stops as it does when its model server is down
    (seeds in flight stay pending; a rerun resumes)."""

    def __init__(self, address: str, detail: str):
        RuntimeError.__init__(self, f"every Ray worker died and none will be restarted (last: {detail}); "
                                    f"check the cluster at {address}, then rerun to resume")
        self.server = address
        self.failures = 0


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--ray needs Ray: pip install 'synthgraph[ray]' (on every node of the cluster)") from None
    return ray


class SeedWorker:
    """One worker (made a Ray actor by `RayWorkers`): the recipe's models and the family's context, built once in
    the worker's process, and the seeds sent to it, run concurrently."""

    def __init__(self, recipe: RecipeBase, run_id: str, engine_args: dict[str, Any]):
        # Only kept here: what fails in `start` reaches the driver as the exception it is (an actor whose
        # constructor raised is reported dead, its exception as text).
        self.recipe, self.run_id, self.engine_args = recipe, run_id, engine_args
        self.store: Store | None = None
        self.pool: ModelPool | None = None
        self.executor: SeedExecutor | None = None

    def make_pool(self, recipe: RecipeBase, engine_args: dict[str, Any]) -> ModelPool:
        return ModelPool(recipe.engine, max_attempts=recipe.max_model_attempts, engine_args=engine_args)

    async def start(self, store_rows: dict[str, Any] | None = None) -> dict[str, Any]:
        """Load the engines (once; a restarted worker loads again). `store_rows`: the rows of the run's store the
        family's context reads (`Family.store_reads`), table -> Arrow table. Says where the worker runs."""
        import ray

        t0 = time.perf_counter()
        if self.executor is None:
            recipe = self.recipe
            fam = family(recipe.graph)
            self.pool = self.make_pool(recipe, self.engine_args)
            # The driver owns the store: a family that reads it (a corpus to search) gets a copy of those rows.
            self.store = Store.holding(store_rows) if store_rows else None
            context = fam.make_context(recipe, self.pool, self.store)
            self.executor = SeedExecutor(self.run_id, fam, fam.graph_for(recipe), context)
        await self.pool.start()
        return {"pid": os.getpid(), "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
                "load_s": time.perf_counter() - t0}

    async def run_seed(self, seed: SeedBase) -> SeedOutcome:
        # A task of its own, so the seed's call log (a context variable) is the seed's alone.
        return await asyncio.create_task(self.executor.run(seed))


@dataclass
class Worker:
    """The driver's view of one worker: its actor handle, its seeds in flight, whether it can take seeds."""

    index: int
    actor: Any
    in_flight: int = 0
    up: bool = True        # False from its death until the restarted actor has its engine loaded again
    gone: bool = False     # dead, and Ray will not restart it
    info: dict[str, Any] = field(default_factory=dict)
    deaths: int = 0


class RayWorkers:
    """The driver's side: starts the workers, sends each seed to the least busy live one, redoes seeds whose
    worker died, and stops the workers at the end."""

    worker_class: type[SeedWorker] = SeedWorker

    def __init__(self, options: RayOptions, recipe: RecipeBase, run_id: str, *,
                 store_rows: dict[str, Any] | None = None,
                 on_call: Callable[[AgentCallRow], None] = lambda call: None,
                 on_requeued: Callable[[str], None] = lambda seed_id: None,
                 on_ready: Callable[[list[Worker]], None] = lambda workers: None):
        self.options = options
        self.recipe = recipe
        self.run_id = run_id
        self.on_call = on_call
        self.on_requeued = on_requeued
        self.on_ready = on_ready
        self.per_worker = recipe.concurrency
        self.store_rows = store_rows or {}  # table -> Arrow rows of the store the family's context reads
        self.workers: list[Worker] = []
        self._changed = asyncio.Event()   # a slot freed, a worker died or came back
        self._revivals: set[asyncio.Task] = set()
        self._last_death = ""
        self._ray = None
        self._connected_here = False
        self._store_rows_ref = None

    @property
    def slots(self) -> int:
        return self.per_worker * len(self.workers)

    async def start(self) -> None:
        ray = self._ray = import_ray()
        self._connect(ray)
        count, resources, engine_args = self._plan(ray)
        actor_class = ray.remote(self.worker_class)
        # Put once for every worker and every restart of one: `start` takes it, not the constructor, since Ray
        # warns of constructor arguments in the object store (an actor restart needs them still there).
        self._store_rows_ref = ray.put(self.store_rows) if self.store_rows else None
        for index in range(count):
            actor = actor_class.options(
                **resources, max_restarts=self.options.max_restarts, max_task_retries=0,
                # The seeds in flight plus the control calls (start) beside them.
                max_concurrency=self.per_worker + 2, scheduling_strategy="SPREAD",
            ).remote(self.recipe, self.run_id, engine_args)
            self.workers.append(Worker(index, actor))
        results = await asyncio.gather(*(self._start(worker) for worker in self.workers), return_exceptions=True)
        for worker, result in zip(self.workers, results):
            if isinstance(result, ModelServerDown):
                raise result
            if isinstance(result, BaseException):
                cause = _root_cause(result)
                raise RayUnavailable(f"Ray worker {worker.index} could not start: {type(cause).__name__}: "
                                     f"{_first_line(cause)}") from result
        self.on_ready(self.workers)

    def _connect(self, ray) -> None:
        address = self.options.address
        if address == "local":
            address = None
        elif ":" in address and not address.startswith("ray://"):
            _check_reachable(address)  # ray.init retries an address nobody answers at for minutes
        if ray.is_initialized():  # a notebook or test that connected already: its cluster is the one used
            return
        # ray.init takes SIGTERM over (exit at once); the runner's own handler finishes the seeds in flight first.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # its C++ warnings would bury the progress display
        main_thread = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                     include_dashboard=False if address is None else None)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            # Ray >= 2.59 turns token authentication on for a head started where ~/.ray/auth_token exists; a
            # driver without the token is refused with the same error as an address where nobody answers.
            raise RayUnavailable(f"--ray {self.options.address}: cannot connect ({_first_line(exc)}); start a "
                                 "cluster with `ray start --head`, or, if it asks for a token, export "
                                 "RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN_PATH unless it is ~/.ray/auth_token)"
                                 ) from None
        finally:
            if main_thread and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        self._connected_here = True

    def _plan(self, ray) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """How many workers, the resources each asks Ray for, and the engine arguments each passes to vLLM."""
        tp = self.options.tensor_parallel_size
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus:
            # One engine per `tp` GPUs; vLLM spreads its tensor-parallel ranks over the GPUs Ray gave the actor.
            count = self.options.workers or max(1, gpus // tp)
            if count * tp > gpus:
                raise RayUnavailable(f"--ray-workers {count} x --ray-tensor-parallel-size {tp} needs {count * tp} "
                                     f"GPUs; the cluster has {gpus}")
            return count, {"num_gpus": tp, "num_cpus": 1}, ({"tensor_parallel_size": tp} if tp > 1 else {})
        if tp > 1:
            raise RayUnavailable(f"--ray-tensor-parallel-size {tp}: the cluster has no GPUs")
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        cpus = int(resources.get("CPU", 0))
        count = self.options.workers or max(1, nodes)
        if count > cpus:
            raise RayUnavailable(f"--ray-workers {count}: each worker takes one of the cluster's CPUs and it has "
                                 f"{cpus}; ask for fewer workers or add nodes")
        # An engine on CPU uses every core of its node; one CPU of Ray's bookkeeping per worker spreads the
        # workers one per node when there are as many workers as nodes.
        return count, {"num_cpus": 1}, {}

    async def _start(self, worker: Worker) -> None:
        worker.info = await worker.actor.start.remote(self._store_rows_ref)

    async def run(self, seed: SeedBase) -> SeedOutcome:
        """The seed's outcome from some worker; a try whose worker died is redone on another (or the restarted)
        one, at most `seed_attempts` times."""
        from ray.exceptions import RayActorError, RayTaskError

        died = ""
        for attempt in range(1, self.options.seed_attempts + 1):
            worker = await self._free_worker()
            worker.in_flight += 1
            ref = worker.actor.run_seed.remote(seed)
            try:
                outcome: SeedOutcome = await ref
            except asyncio.CancelledError:
                self._ray.cancel(ref)  # the run was interrupted: the worker stops the seed too
                raise
            except RayActorError as exc:
                died = _first_line(exc)
                self._lost(worker, died)
                if attempt < self.options.seed_attempts:
                    self.on_requeued(seed.seed_id)
                continue
            except RayTaskError as exc:  # raised in the worker outside the seed's graph
                if isinstance(exc.cause, ModelServerDown):
                    raise exc.cause from None
                raise
            finally:
                worker.in_flight -= 1
                self._changed.set()
            for call in outcome.agent_calls:
                self.on_call(call)
            return outcome
        error = f"WorkerDied: the seed's worker died on each of {self.options.seed_attempts} tries (last: {died})"
        return SeedOutcome(run_id=self.run_id, seed_id=seed.seed_id, status="error", error=error,
                           samples=[error_sample(self.run_id, seed.seed_id, error, "")])

    async def _free_worker(self) -> Worker:
        while True:
            if all(worker.gone for worker in self.workers):
                raise RayWorkersLost(self.options.address, self._last_death)
            free = [w for w in self.workers if w.up and w.in_flight < self.per_worker]
            if free:
                return min(free, key=lambda w: (w.in_flight, w.index))
            self._changed.clear()
            await self._changed.wait()

    def _lost(self, worker: Worker, detail: str) -> None:
        """The worker died under a seed: no seeds go to it until Ray has restarted it and its engine is up."""
        self._last_death = detail
        if not worker.up:
            return  # its other seeds in flight report the same death
        worker.up = False
        worker.deaths += 1
        task = asyncio.create_task(self._revive(worker))
        self._revivals.add(task)
        task.add_done_callback(self._revivals.discard)

    async def _revive(self, worker: Worker) -> None:
        from ray.exceptions import ActorDiedError, RayActorError

        restarts_left = self.options.max_restarts < 0 or worker.deaths <= self.options.max_restarts
        dead_since: float | None = None
        while True:
            try:
                # Ray queues the call while it restarts the actor; `start` loads the new process's engine.
                await self._start(worker)
            except RayActorError as exc:
                # Dead (not merely restarting) with no restart left, or for a minute on end: gone for good.
                if isinstance(exc, ActorDiedError):
                    dead_since = dead_since or time.monotonic()
                    if not restarts_left or time.monotonic() - dead_since > DEAD_FOR_GOOD_S:
                        self._last_death = _first_line(exc)
                        worker.gone = True
                        break
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:
                # Restarted, it cannot start (its engine does not load on the node Ray put it on, a model server
                # is down): it takes no more seeds. Left as it was, a run whose workers all ended so would wait
                # for them for ever.
                cause = _root_cause(exc)
                self._last_death = (f"worker {worker.index}, restarted, could not start: {type(cause).__name__}: "
                                    f"{_first_line(cause)}")
                worker.gone = True
                break
            worker.up = True
            break
        self._changed.set()

    def shutdown(self) -> None:
        for task in self._revivals:
            task.cancel()
        if self._ray is None:
            return
        for worker in self.workers:
            self._ray.kill(worker.actor, no_restart=True)  # its engine processes die with it (engine_lifetime)
        if self._connected_here:
            self._ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except ValueError:
        raise RayUnavailable(f"--ray {address}: expected HOST:PORT, ray://HOST:PORT, auto or local") from None
    except OSError as exc:
        raise RayUnavailable(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                             f"with `ray start --head --port {port}` or fix the address") from None


def _root_cause(exc: BaseException) -> BaseException:
    """What really went wrong in a worker: Ray wraps it (an actor that died of its constructor's exception holds
    a task error that holds the exception)."""
    while isinstance(getattr(exc, "cause", None), BaseException):
        exc = exc.cause
    return exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
