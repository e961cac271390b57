"""Admission paced by the engine's queue: a new seed starts while the engine has room for another request, the
recipe's concurrency stays the upper bound, requests carry their seed's admission order as priority, and an
OpenAI-compatible vLLM server's load is read from its Prometheus metrics."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import ReasoningScript, ScriptedPool

from synthgraph.agents.models import (QUEUE_STEPS, RAMP_FLOOR, EngineLoad, ModelPool, ModelSpec, Sampling,
                                      ScriptedChatModel, SeedRequests, ServerLoad, current_seed, user_message)
from synthgraph.graphs.recipe import load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner

GOLD = [{"id": f"gold-{i:02d}", "problem": f"What is {i} times 7?", "answer": str(7 * i)} for i in range(1, 17)]


def solver_reply(messages) -> str:
    number = int(messages[-1].content.split()[2])
    return f"{number} times 7 is {7 * number}.\n#### {7 * number}"


class FakeEngine:
    """Continuous batching in miniature: `capacity` requests are generated at once, each for `request_s`; the rest
    queue. Records the most it ever ran and queued, and the seeds in flight at each request's arrival."""

    def __init__(self, capacity: int, request_s: float = 0.03):
        self.capacity = capacity
        self.request_s = request_s
        self.running = 0
        self.waiting = 0
        self.max_running = 0
        self.max_waiting = 0
        self.seeds_in_flight: list[int] = []
        self.runner: Runner | None = None
        self._slots: asyncio.Semaphore | None = None

    async def serve(self) -> None:
        self._slots = self._slots or asyncio.Semaphore(self.capacity)
        if self.runner is not None:
            self.seeds_in_flight.append(len(self.runner._in_flight))
        self.waiting += 1
        self.max_waiting = max(self.max_waiting, self.waiting)
        async with self._slots:
            self.waiting -= 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            await asyncio.sleep(self.request_s)
            self.running -= 1

    def load(self) -> EngineLoad:
        return EngineLoad(running=self.running, waiting=self.waiting, capacity=self.capacity)


class EngineChat(ScriptedChatModel):
    engine: Any

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        await self.engine.serve()
        return self._generate(messages, stop, run_manager, **kwargs)


class EnginePool(ScriptedPool):
    """Every role on one fake engine; `reports_load=False` plays a back end that says nothing of its queue."""

    def __init__(self, script, engine: FakeEngine, *, reports_load: bool = True):
        super().__init__(script)
        self.engine = engine
        self.reports_load = reports_load

    def _build(self, spec: ModelSpec):
        return EngineChat(respond=self.script, engine=self.engine)

    async def loads(self) -> list[EngineLoad]:
        return [self.engine.load()] if self.reports_load else []


def run_on(engine: FakeEngine, *, concurrency: int, reports_load: bool = True, samples: int = 2,
           script: ReasoningScript | None = None, tmp_path: Path):
    recipe = parse_recipe({"name": "unit", "graph": "reasoning", "seeds": {"inline": GOLD}, "dedup": False,
                           "roles": {"solver": {"samples": samples}}, "concurrency": concurrency})
    pool = EnginePool(script or ReasoningScript(solver=solver_reply), engine, reports_load=reports_load)
    tmp_path.mkdir(exist_ok=True)
    runner = Runner(recipe, load_seeds(recipe, base=Path("."), where="test"), store_path=tmp_path / "s.duckdb",
                    pool=pool, checkpoints=False)
    engine.runner = runner
    return asyncio.run(runner.run())


def test_has_room_only_with_nothing_waiting_and_a_free_slot_after_the_seeds_still_starting():
    assert EngineLoad(running=3, waiting=0, capacity=4).has_room()
    assert not EngineLoad(running=3, waiting=0, capacity=4).has_room(starting=1)
    assert not EngineLoad(running=4, waiting=0, capacity=4).has_room()
    assert not EngineLoad(running=1, waiting=2, capacity=4).has_room()
    # A server whose batch size is not visible: only its queue says it is full.
    assert EngineLoad(running=500, waiting=0).has_room(starting=10)
    assert not EngineLoad(running=5, waiting=1).has_room()


def test_the_engine_queue_paces_admission_and_keeps_the_batch_full(tmp_path):
    # Each seed: 2 solver calls, then a critic call per verified attempt. With a fixed concurrency of 16 all 16
    # seeds start at once and 28 requests queue behind a batch of 4; paced by the queue, a handful do.
    fixed = FakeEngine(capacity=4)
    result = run_on(fixed, concurrency=16, reports_load=False, tmp_path=tmp_path / "fixed")
    assert result.tally.accepted == 32 and max(fixed.seeds_in_flight) == 16 and fixed.max_waiting >= 24

    paced = FakeEngine(capacity=4)
    result = run_on(paced, concurrency=16, tmp_path=tmp_path / "paced")
    assert result.tally.accepted == 32 and result.tally.seeds_done == 16
    assert paced.max_running == 4                     # the batch was full
    # A seed is admitted only into a free slot, so the queue holds at most what admitted seeds fan out to
    # (a seed's second solver branch, and seeds whose next call follows a pause of the previous one's).
    assert paced.max_waiting <= 4
    # Seeds between calls (verifying) leave slots that new seeds take: more seeds than slots, far from all 16.
    assert max(paced.seeds_in_flight) <= 8


def test_concurrency_stays_the_upper_bound_when_the_engine_has_room(tmp_path):
    roomy = FakeEngine(capacity=1000)
    result = run_on(roomy, concurrency=5, tmp_path=tmp_path)
    assert result.tally.seeds_done == 16
    assert max(roomy.seeds_in_flight) == 5


def test_a_full_engine_holds_back_the_first_seed_until_it_has_room(tmp_path):
    busy = FakeEngine(capacity=2)
    busy.running = 2                                  # someone else's requests fill the batch

    async def free_later():
        await asyncio.sleep(0.3)
        busy.running = 0

    started_at: list[float] = []

    def solver(messages) -> str:
        started_at.append(asyncio.get_running_loop().time())
        return solver_reply(messages)

    async def scenario():
        t0 = asyncio.get_running_loop().time()
        recipe = parse_recipe({"name": "unit", "graph": "reasoning", "seeds": {"inline": GOLD[:2]}, "dedup": False,
                               "roles": {"solver": {"samples": 1}}, "concurrency": 8})
        runner = Runner(recipe, load_seeds(recipe, base=Path("."), where="test"), store_path=tmp_path / "s.duckdb",
                        pool=EnginePool(ReasoningScript(solver=solver), busy), checkpoints=False)
        freed = asyncio.create_task(free_later())
        result = await runner.run()
        await freed
        return t0, result

    t0, result = asyncio.run(scenario())
    assert result.tally.seeds_done == 2
    assert min(started_at) - t0 >= 0.3


def test_requests_carry_their_seeds_admission_order_as_priority(tmp_path):
    priorities: dict[str, set[int]] = {}

    def solver(messages) -> str:
        seed = current_seed.get()
        problem = messages[-1].content
        priorities.setdefault(problem.split()[2], set()).add(seed.priority)
        return solver_reply(messages)

    result = run_on(FakeEngine(capacity=4), concurrency=16, samples=3, script=ReasoningScript(solver=solver),
                    tmp_path=tmp_path)
    assert result.tally.seeds_done == 16
    # Seeds are admitted in list order; every branch of the fan-out carries its seed's number.
    assert priorities == {str(i): {i - 1} for i in range(1, 17)}


# ------------------------------------------------------------------------------------ an OpenAI server


def vllm_metrics(running: int, waiting: int, steps: int = 50) -> str:
    """vLLM's `/metrics`, the families admission reads: `steps` is the engine steps that gave output so far."""
    return f"""\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} {running}.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}.0
# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} 1000.0
# HELP vllm:prefix_cache_hits Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} 600.0
# HELP vllm:generation_tokens Number of generation tokens processed.
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{{engine="0",model_name="m"}} 4321.0
# HELP vllm:iteration_tokens_total Histogram of number of tokens per engine_step.
# TYPE vllm:iteration_tokens_total histogram
vllm:iteration_tokens_total_bucket{{engine="0",le="1.0",model_name="m"}} 0.0
vllm:iteration_tokens_total_bucket{{engine="0",le="+Inf",model_name="m"}} {steps}.0
vllm:iteration_tokens_total_count{{engine="0",model_name="m"}} {steps}.0
vllm:iteration_tokens_total_sum{{engine="0",model_name="m"}} 4321.0
"""


VLLM_METRICS = vllm_metrics(7, 2)


class MetricsServer:
    """An OpenAI-compatible endpoint serving model `m`, with vLLM's `/metrics` or none; keeps each request body.
    `page` and `answer` write the metrics page and each reply."""

    def __init__(self, metrics: str | None):
        self.bodies: list[dict] = []
        self.metrics = metrics
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, data: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                page = server.page() if self.path == "/metrics" else None
                if page is not None:
                    self.reply(200, page.encode(), "text/plain; version=0.0.4")
                else:
                    self.reply(404, b'{"detail": "Not Found"}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                message = {"role": "assistant", "content": server.answer(body)}
                self.reply(200, json.dumps({
                    "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.spec = ModelSpec.parse(f"openai:http://127.0.0.1:{self.httpd.server_address[1]}/v1:m")
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self) -> str | None:
        return self.metrics

    def answer(self, body: dict) -> str:
        return "4"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def metrics_server(request):
    server = MetricsServer(request.param)
    yield server
    server.stop()


async def ask_as_seed(pool: ModelPool, spec: ModelSpec, priority: int):
    client = pool.client(spec)
    current_seed.set(SeedRequests(priority=priority))
    await client.complete([user_message("2+2?")], role="solver", sampling=Sampling(max_tokens=4))


@pytest.mark.parametrize("metrics_server", [VLLM_METRICS], indirect=True)
def test_a_vllm_server_reports_its_queue_from_prometheus_and_gets_priorities(metrics_server):
    pool = ModelPool()
    pool.client(metrics_server.spec)

    async def scenario():
        loads = await pool.loads()
        await ask_as_seed(pool, metrics_server.spec, priority=5)
        return loads

    loads = asyncio.run(scenario())
    # 7 running while 2 wait: no room; whether for a slot or for the step's prefill budget, later reads tell
    assert loads == [EngineLoad(running=7, waiting=2, ramp=RAMP_FLOOR)]
    assert not loads[0].has_room()
    server = pool._servers[metrics_server.spec.base_url]
    assert (server.prefix_queries, server.prefix_hits, server.generated_tokens) == (1000, 600, 4321)
    assert metrics_server.bodies[0]["priority"] == 5


def serving(metrics_server: MetricsServer, server: ServerLoad, running: int, waiting: int = 0,
            steps: int = 50) -> EngineLoad:
    """The server's load after its page was set to `running`, `waiting` and `steps`."""
    metrics_server.metrics = vllm_metrics(running, waiting, steps)
    return asyncio.run(server.load())


@pytest.mark.parametrize("metrics_server", [VLLM_METRICS], indirect=True)
def test_a_queue_that_outlasts_engine_steps_without_more_running_gives_the_batch_size(metrics_server):
    server = ServerLoad(metrics_server.spec.base_url, interval_s=0)
    # A burst of prompts queues for the step's token budget, and the steps take it into the batch: no batch size.
    assert serving(metrics_server, server, 28, 4, steps=100) == EngineLoad(running=28, waiting=4, ramp=RAMP_FLOOR)
    assert serving(metrics_server, server, 30, 2, steps=100 + QUEUE_STEPS).capacity is None
    assert serving(metrics_server, server, 32, 0, steps=101 + QUEUE_STEPS).capacity is None
    # A full batch: the queue stays, with no more running than when it began, QUEUE_STEPS steps on.
    assert serving(metrics_server, server, 64, 64, steps=200).capacity is None
    assert serving(metrics_server, server, 64, 60, steps=199 + QUEUE_STEPS).capacity is None
    assert serving(metrics_server, server, 63, 61, steps=200 + QUEUE_STEPS) == EngineLoad(
        running=63, waiting=61, capacity=64)


@pytest.mark.parametrize("metrics_server", [VLLM_METRICS], indirect=True)
def test_a_failed_read_of_a_vllm_server_keeps_its_last_load_and_counts_our_requests_against_it(metrics_server):
    server = ServerLoad(metrics_server.spec.base_url, interval_s=0)
    assert serving(metrics_server, server, 5, 0, steps=50) == EngineLoad(running=5, waiting=0, ramp=RAMP_FLOOR)
    metrics_server.metrics = None   # the page fails: a 404 here, a timeout or a reset elsewhere
    server.outstanding = RAMP_FLOOR
    stale = asyncio.run(server.load())   # no load at all would leave admission unpaced
    assert stale == EngineLoad(running=RAMP_FLOOR, waiting=0, ramp=RAMP_FLOOR) and not stale.has_room()


@pytest.mark.parametrize("metrics_server", [VLLM_METRICS.replace("vllm:iteration_tokens", "vllm:other")],
                         indirect=True)
def test_a_server_that_does_not_count_its_steps_takes_its_first_queue_as_its_batch_size(metrics_server):
    server = ServerLoad(metrics_server.spec.base_url, interval_s=0)
    assert asyncio.run(server.load()) == EngineLoad(running=7, waiting=2, capacity=7)


@pytest.mark.parametrize("metrics_server", [VLLM_METRICS], indirect=True)
def test_a_server_seen_running_more_than_its_learned_batch_size_raises_it(metrics_server):
    server = ServerLoad(metrics_server.spec.base_url, interval_s=0, paced_interval_s=0)
    serving(metrics_server, server, 7, 2, steps=50)
    assert serving(metrics_server, server, 7, 2, steps=50 + QUEUE_STEPS).capacity == 7
    assert serving(metrics_server, server, 12, 0, steps=60 + QUEUE_STEPS) == EngineLoad(
        running=12, waiting=0, capacity=12)


@pytest.mark.parametrize("metrics_server", [VLLM_METRICS], indirect=True)
def test_a_server_whose_batch_size_is_known_is_read_only_at_the_slower_paced_interval(metrics_server):
    server = ServerLoad(metrics_server.spec.base_url, interval_s=0, paced_interval_s=3600)
    serving(metrics_server, server, 7, 2, steps=50)
    learned = serving(metrics_server, server, 7, 2, steps=50 + QUEUE_STEPS)   # the batch size (7) from this read
    again = serving(metrics_server, server, 12, 0, steps=60 + QUEUE_STEPS)
    assert learned == again == EngineLoad(running=7, waiting=2, capacity=7)   # the page was not read again
    server.paced_interval_s = 0
    assert asyncio.run(server.load()) == EngineLoad(running=12, waiting=0, capacity=12)


@pytest.mark.parametrize("metrics_server", [None], indirect=True)
def test_a_server_without_metrics_reports_no_load_and_gets_no_priority_field(metrics_server):
    pool = ModelPool()
    pool.client(metrics_server.spec)

    async def scenario():
        loads = await pool.loads()
        await ask_as_seed(pool, metrics_server.spec, priority=5)
        return loads, await pool.loads()

    first, again = asyncio.run(scenario())
    assert first == [] and again == []
    assert "priority" not in metrics_server.bodies[0]   # an OpenAI server that is not vLLM may refuse fields
    assert pool._servers[metrics_server.spec.base_url].is_vllm is False


@pytest.mark.parametrize("metrics_server", [VLLM_METRICS, None], indirect=True)
def test_an_openai_server_gets_max_tokens_by_the_name_every_such_server_reads(metrics_server):
    pool = ModelPool()
    pool.client(metrics_server.spec)
    asyncio.run(ask_as_seed(pool, metrics_server.spec, priority=5))
    # LangChain's `max_completion_tokens` is ignored by transformers serve, which then runs to its own default
    assert metrics_server.bodies[0]["max_tokens"] == 4
    assert "max_completion_tokens" not in metrics_server.bodies[0]


def test_server_load_reads_the_metrics_root_beside_the_v1_path():
    assert ServerLoad("http://host:8000/v1").url == "http://host:8000/metrics"
    assert ServerLoad("http://host:8000/v1/").url == "http://host:8000/metrics"
    assert ServerLoad("http://host/proxy/v1").url == "http://host/proxy/metrics"


def test_a_server_whose_batch_size_is_known_is_paced_by_our_own_requests_between_reads():
    server = ServerLoad("http://host:8000/v1", interval_s=3600)
    server.is_vllm, server.capacity = True, 4
    server._last, server._read_at = EngineLoad(running=1, waiting=0), time.monotonic()  # a fresh read
    server.outstanding = 3

    async def load():
        return await server.load()

    assert asyncio.run(load()) == EngineLoad(running=3, waiting=0, capacity=4)
    assert asyncio.run(load()).has_room() and not asyncio.run(load()).has_room(starting=1)
    server.outstanding = 6  # sent since the last read: more than the batch holds, so some are queued
    assert asyncio.run(load()) == EngineLoad(running=4, waiting=2, capacity=4)


class BatchingServer(MetricsServer):
    """A vLLM stand-in that runs `capacity` requests at once, each for `request_s`, queues the rest, and reports
    both counts on `/metrics` as vLLM does; answers reasoning prompts (solver, critic) right."""

    def __init__(self, capacity: int, request_s: float = 0.05):
        super().__init__(metrics=None)
        self.request_s = request_s
        self.running = self.waiting = self.most_held = self.steps = 0
        self.counts = threading.Lock()
        self.batch = threading.Semaphore(capacity)

    def page(self) -> str:
        with self.counts:
            return vllm_metrics(self.running, self.waiting, self.steps)

    def answer(self, body: dict) -> str:
        with self.counts:
            self.waiting += 1
            self.most_held = max(self.most_held, self.running + self.waiting)
        with self.batch:
            with self.counts:
                self.waiting -= 1
                self.running += 1
            time.sleep(self.request_s)
            with self.counts:
                self.running -= 1
                self.steps += 1   # a request's one "step", which gives its whole output
        if "response_format" in body:
            return json.dumps({"reason": "Each step follows.", "score": 8})
        return solver_reply([SimpleNamespace(content=body["messages"][-1]["content"])])


def test_a_fresh_server_gets_no_more_requests_than_its_ramp_until_a_read_shows_it_running_them(tmp_path, monkeypatch):
    # Its batch size is unknown until something queues. A read that once said nothing waits used to let every seed
    # the concurrency allowed start at once: 32 here. Now, with no read after the first, only RAMP_FLOOR do.
    monkeypatch.setattr(ServerLoad, "__init__", functools.partialmethod(ServerLoad.__init__, interval_s=3600))
    server = BatchingServer(capacity=16, request_s=0.3)
    seeds = [{"id": f"gold-{i:02d}", "problem": f"What is {i} times 7?", "answer": str(7 * i)} for i in range(1, 33)]
    recipe = parse_recipe({"name": "unit", "graph": "reasoning", "model": str(server.spec), "seeds": {"inline": seeds},
                           "dedup": False, "roles": {"solver": {"samples": 1}}, "concurrency": 32})
    runner = Runner(recipe, load_seeds(recipe, base=Path("."), where="test"), store_path=tmp_path / "s.duckdb",
                    pool=ModelPool(), checkpoints=False)
    try:
        result = asyncio.run(runner.run())
    finally:
        server.stop()
    assert result.tally.seeds_done == 32 and result.tally.accepted == 32
    # Each seed sends one request at a time (one solver, then the critic); a seed between the two leaves its slot
    # to a new one (as with a known batch size), so a few more than the ramp can be out for a moment.
    assert server.most_held < 2 * RAMP_FLOOR


@pytest.mark.parametrize("metrics_server", [vllm_metrics(0, 0)], indirect=True)
def test_a_servers_ramp_doubles_only_at_reads_that_count_three_quarters_of_our_requests(metrics_server):
    server = ServerLoad(metrics_server.spec.base_url, interval_s=0)
    assert serving(metrics_server, server, 0) == EngineLoad(running=0, waiting=0, ramp=RAMP_FLOOR)
    server.outstanding = RAMP_FLOOR   # the first seeds' requests went out
    behind = serving(metrics_server, server, 5)   # the server counts only 5 of the 8 yet
    assert behind == EngineLoad(running=RAMP_FLOOR, waiting=0, ramp=RAMP_FLOOR) and not behind.has_room()
    seen = serving(metrics_server, server, 6)   # 6 of 8: three quarters (two answered, not yet read)
    assert seen.ramp == 2 * RAMP_FLOOR and seen.has_room(starting=RAMP_FLOOR - 1)
    assert not seen.has_room(starting=RAMP_FLOOR)
    queued = serving(metrics_server, server, 12, waiting=4)   # something queues: the ramp no longer matters
    assert queued == EngineLoad(running=12, waiting=4, ramp=2 * RAMP_FLOOR) and not queued.has_room()
