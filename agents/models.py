"""Model specs -> LangChain chat models, and the one call path every agent goes through.

Three back ends share one interface (`BaseChatModel`):
- `vllm:NAME` — vLLM in-process through its async engine, so every concurrent graph instance lands in one
  continuous batch. NAME is a shipped model (see `shipped_models`), a local Hugging Face folder, or (GPU
  machines) a model name vLLM can resolve offline.
- `openai:http://HOST:PORT/v1:NAME` — any OpenAI-compatible server (`vllm serve`, a load balancer).
- a scripted fake for unit tests (`ScriptedChatModel`), never a default.

`ModelClient.complete` is the single place model calls pass through: it applies sampling, asks for structured
output, refuses empty / malformed / runaway outputs with a bounded retry, and records one `CallRecord` per
attempt into the `CallLog` of the graph instance that made it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks.base import BaseCallbackManager
from langchain_core.callbacks.manager import AsyncCallbackManager, AsyncCallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.globals import get_llm_cache
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables.config import var_child_runnable_config
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from synthgraph.agents.engine_lifetime import bind_engine_processes

# ----------------------------------------------------------------------------------------------- specs


class EngineSettings(BaseModel):
    """How an in-process engine is loaded: fixed for the life of the engine (sampling is per call)."""

    model_config = ConfigDict(extra="forbid")

    max_model_len: int = Field(4096, ge=256, le=131072)
    kv_cache_gib: float = Field(4.0, gt=0, le=512, description="CPU: the KV cache's size (vLLM's kv_cache_memory_bytes; "
                                                           "VLLM_CPU_KVCACHE_SPACE in the environment wins, as in vLLM)")
    enforce_eager: bool = Field(True, description="skip graph compilation: loads ~4x faster on CPU")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_num_seqs: int = Field(64, ge=1, le=4096)
    seed: int = 0


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0, le=2)
    # vLLM's CPU sampler: any top_p < 1 halved batched throughput here (16 requests: 89 vs 176 tok/s).
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1, le=32768)
    seed: int | None = Field(None, description="makes sampling reproducible: each call of a run derives its own seed "
                                               "from it, so k samples differ and a rerun draws the same ones")


_OPENAI_SPEC = re.compile(r"^(https?://[^/\s]+(?:/[^\s:]*)?):(\S+)$")


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["vllm", "openai"]
    model: str
    base_url: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """`vllm:qwen2.5-coder-0.5b`, `vllm:/path/to/hf-folder`, `openai:http://host:8000/v1:MODEL`."""
        provider, sep, rest = text.partition(":")
        if not sep or not rest:
            raise ValueError(f"model spec {text!r} must look like 'vllm:NAME' or 'openai:http://HOST:PORT/v1:NAME'")
        if provider == "vllm":
            return cls(provider="vllm", model=rest)
        if provider == "openai":
            match = _OPENAI_SPEC.match(rest)
            if match is None or re.match(r"^\d+(/|$)", match.group(2)):
                raise ValueError(f"model spec {text!r}: expected 'openai:http://HOST:PORT/v1:MODEL_NAME'")
            base_url, name = match.groups()
            return cls(provider="openai", model=name, base_url=base_url)
        raise ValueError(f"model spec {text!r}: provider must be 'vllm' or 'openai' (got {provider!r})")

    def __str__(self) -> str:
        return f"openai:{self.base_url}:{self.model}" if self.provider == "openai" else f"vllm:{self.model}"


# ------------------------------------------------------------------------------------------ lineage


class CallRecord(BaseModel):
    """One model call attempt, as lineage (its id is given when it is stored: `SeedExecutor`). `error` is set when
    the output was refused (and retried)."""

    role: str
    node: str
    subject: str | None
    model: str
    prompt: list[dict[str, Any]]
    prompt_hash: str
    completion: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    finish_reason: str | None
    sampling: dict[str, Any]
    error: str | None
    started_at: datetime
    # The JSON schema the output was held to (structured output), so the call can be sent again as it was;
    # not a column of the store, whose rows name the role and its template instead.
    json_schema: dict[str, Any] | None = None


@dataclass
class CallLog:
    """Collects the calls of one graph instance; `on_call` feeds live progress (tokens/s). `seed_key` names the
    instance (its seed's id) when a runner runs it: see `sampling_seed`."""

    records: list[CallRecord] = field(default_factory=list)
    on_call: Callable[[CallRecord], None] | None = None
    seed_key: str | None = None
    _asked: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    def add(self, record: CallRecord) -> None:
        self.records.append(record)
        if self.on_call is not None:
            self.on_call(record)

    def sampling_seed(self, seed: int, prompt_hash: str, subject: str | None) -> int:
        """The seed of this instance's next call with this prompt about `subject`, from a role's `seed`. vLLM
        seeds each request on its own, so k branches asking one prompt with one seed would draw the same text k
        times (and every pass of a cycled seed the same as the first): each call gets a seed of its own, derived
        from the instance, the prompt, the branch and how often it asked before. Reproducible, and different."""
        if self.seed_key is None:
            return seed
        asked = self._asked[prompt_hash, subject]
        self._asked[prompt_hash, subject] += 1
        digest = hashlib.sha256(f"{self.seed_key}\x1f{prompt_hash}\x1f{subject}\x1f{asked}".encode()).digest()
        return (seed + int.from_bytes(digest[:4], "big")) % 2**31


current_call_log: contextvars.ContextVar[CallLog | None] = contextvars.ContextVar("synthgraph_call_log", default=None)


# ------------------------------------------------------------------------------- engine load, priorities


class EngineLoad(BaseModel):
    """What one model back end is doing now: the requests it is generating, those queued behind them, and how
    many it runs at once (None: not known, e.g. a server whose settings are not visible). While that is not
    known, `ramp` (if given) bounds the requests it may be given until a read shows it running them."""

    model_config = ConfigDict(frozen=True)

    running: int
    waiting: int
    capacity: int | None = None
    ramp: int | None = None

    def has_room(self, starting: int = 0) -> bool:
        """Whether one more request would run at once rather than queue: nothing waits, and the running ones
        plus the `starting` ones (admitted work whose first request has not arrived yet) leave a free slot."""
        if self.waiting > 0:
            return False
        limit = self.capacity if self.capacity is not None else self.ramp
        return limit is None or self.running + starting < limit


@dataclass
class SeedRequests:
    """The model requests of one graph instance (a seed): the priority they are scheduled with (lower runs first,
    so a seed started earlier finishes before later ones take its slots) and how many it has sent so far."""

    priority: int = 0
    sent: int = 0


current_seed: contextvars.ContextVar[SeedRequests | None] = contextvars.ContextVar("synthgraph_seed", default=None)


class _SchedulerWatch:
    """A vLLM stat logger that keeps the scheduler's latest counts (running, waiting requests) and totals the
    prefix cache's lookups, so admission and benchmarks can read them. vLLM calls `record` once per engine
    step from its output handler, on the event loop."""

    def __init__(self):
        self.running = 0
        self.waiting = 0
        self.prefix_queries = 0   # prompt tokens looked up in the prefix cache
        self.prefix_hits = 0      # of those, found (not computed again)

    def factory(self, vllm_config, engine_index: int = 0):
        from vllm.v1.metrics.loggers import StatLoggerBase

        watch = self

        class Logger(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                if scheduler_stats is None:
                    return
                watch.running = scheduler_stats.num_running_reqs
                watch.waiting = scheduler_stats.num_waiting_reqs + scheduler_stats.num_skipped_waiting_reqs
                watch.prefix_queries += scheduler_stats.prefix_cache_stats.queries
                watch.prefix_hits += scheduler_stats.prefix_cache_stats.hits

            def log_engine_initialized(self):
                pass

        return Logger(vllm_config, engine_index)


def _metric_sum(families, name: str) -> float | None:
    """The sum of a Prometheus metric's samples over its labels (e.g. one per served model), None if absent."""
    # By sample name: the parser files a counter's `_total` samples under a family of their own.
    values = [sample.value for family in families for sample in family.samples
              if sample.name in (name, f"{name}_total")]
    return sum(values) if values else None


# A server's first load, before it has been seen running anything: a few requests, whatever its batch size.
RAMP_FLOOR = 8
# A queue that lasts this many engine steps (with output) without more requests running than at its start is
# waiting for a batch slot. A burst of prompts also queues, for the step's token budget (vLLM's CPU server: 2,048
# tokens), but each step then takes some of it into the batch.
QUEUE_STEPS = 8

_READ_METRICS = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:prefix_cache_queries",
                 "vllm:prefix_cache_hits", "vllm:generation_tokens", "vllm:iteration_tokens_total_count")


class ServerLoad:
    """The load of an OpenAI-compatible server, read from its Prometheus `/metrics` (vLLM's
    `vllm:num_requests_running` / `vllm:num_requests_waiting`), at most every `interval_s`. A server without
    them (not vLLM, or metrics off) reports None for the rest of the run: admission then keeps to the
    recipe's fixed concurrency. Seeing vLLM's metrics is also what makes it safe to send vLLM's `priority`.

    Once its batch size is known our own requests pace admission, and the page is read only every
    `paced_interval_s`, for other clients' load and a larger batch: rendering it costs vLLM's server ~5 ms of
    CPU (5.3 ms measured on this project's CPU machine), 2% of a core at four reads a second, taken from the
    engine where they share the CPUs."""

    def __init__(self, base_url: str, interval_s: float = 0.25, paced_interval_s: float = 1.0):
        root = re.sub(r"/v1/?$", "", base_url.rstrip("/"))
        self.url = f"{root}/metrics"
        self.interval_s = interval_s
        self.paced_interval_s = paced_interval_s
        self.is_vllm: bool | None = None   # None until the first read
        # Our own requests to it not yet answered (current, where the metrics are up to `interval_s` old), and
        # the most requests it was seen running while others waited for a slot: its batch size, which /metrics
        # does not give. Once that is known, our own count paces admission between reads.
        self.outstanding = 0
        self.capacity: int | None = None
        # Until the batch size is known: how many requests it may be loaded with. It doubles at each read that
        # shows nothing queued and at least three quarters of our requests in the server's counts, as TCP's
        # slow start grows its window on acknowledgements. On a busy CPU vLLM's front end and a step that
        # prefills a burst each take seconds before the counts show new requests: a read that does not count
        # ours yet says nothing of its room. Not all of ours: some are always on the wire, answered but not yet
        # read (a quarter would be requests of under ~20 ms, not generations).
        self.ramp = RAMP_FLOOR
        self._queue: tuple[float, int] | None = None   # (engine steps, most running) since a queue was first seen
        self.prefix_queries = 0.0
        self.prefix_hits = 0.0
        self.generated_tokens = 0.0   # by the whole server so far, as of the last read
        self._last: EngineLoad | None = None
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._http = None   # (event loop, httpx client): a client per read cost 20 ms of CPU (its TLS context)

    def _learn_from_queue(self, running: int, steps: float | None) -> None:
        """Running while others wait is the batch size only if the wait is for a slot. Requests also wait for the
        step's token budget: a burst of prompts to prefill. That queue drains into the batch, step by step; one
        for a slot keeps as many running as when it began. Taken from a burst's queue (28 running of 64, 4
        waiting, at the ramp's step from 16 to 32), the estimate held a 128-seed run below the true batch for
        minutes: paced by our own requests, the server is never offered more than the estimate, so only a
        seed's fan-out beyond it could raise it, one or two requests at a time."""
        if steps is None:   # a server that does not count its steps: the first queue is taken as the limit
            self.capacity = running
        elif self._queue is None or running > self._queue[1]:
            self._queue = (steps, running)
        elif steps - self._queue[0] >= QUEUE_STEPS:
            self.capacity = self._queue[1]

    def _client(self):
        import httpx

        loop = asyncio.get_running_loop()
        if self._http is None or self._http[0] is not loop:
            self._http = (loop, httpx.AsyncClient(timeout=5))
        return self._http[1]

    async def load(self) -> EngineLoad | None:
        if self.is_vllm is False:
            return None
        async with self._lock:
            interval = self.interval_s if self.capacity is None else self.paced_interval_s
            if time.monotonic() - self._read_at >= interval:
                # A failed read (a timeout, a hiccup) of a server that has shown its metrics keeps the last one,
                # and our own requests count against it: no load at all would leave admission paced by the
                # recipe's concurrency alone until the next read.
                self._last = await self._read() or self._last
                self._read_at = time.monotonic()
        last = self._last if self.is_vllm else None
        if last is None:
            return None
        if self.capacity is None:
            # No queue has shown the batch size yet: a read alone (up to `interval_s` old, and behind vLLM's
            # front end) would let a fresh server receive every seed the concurrency allows at once. Our own
            # requests count as they go out, up to the ramp.
            return EngineLoad(running=max(last.running, self.outstanding), waiting=last.waiting, ramp=self.ramp)
        return EngineLoad(running=max(last.running, min(self.outstanding, self.capacity)),
                          waiting=max(last.waiting, self.outstanding - self.capacity), capacity=self.capacity)

    async def _read(self) -> EngineLoad | None:
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        sent = self.outstanding
        try:
            response = await self._client().get(self.url)
            response.raise_for_status()
            # vLLM's page is ~60 KB of histograms; parsing only the lines read costs 0.1 ms instead of 6.
            wanted = "\n".join(line for line in response.text.splitlines() if line.startswith(_READ_METRICS))
            families = list(text_string_to_metric_families(wanted))
        except (httpx.HTTPError, ValueError):
            # Unreachable now: the calls themselves report that (and open the breaker); no metrics at all on
            # the first read: this server will not have them later either.
            if self.is_vllm is None:
                self.is_vllm = False
            return None
        running = _metric_sum(families, "vllm:num_requests_running")
        waiting = _metric_sum(families, "vllm:num_requests_waiting")
        if running is None or waiting is None:
            self.is_vllm = False
            return None
        self.is_vllm = True
        if self.capacity is not None:
            # A later read of more running raises it: other clients' requests, or a batch that grew.
            self.capacity = max(self.capacity, int(running))
        elif waiting > 0:
            self._learn_from_queue(int(running), _metric_sum(families, "vllm:iteration_tokens_total_count"))
        else:
            self._queue = None
            if 4 * running >= 3 * (sent := min(sent, self.outstanding)):
                self.ramp = max(self.ramp, 2 * sent)
        self.prefix_queries = _metric_sum(families, "vllm:prefix_cache_queries") or 0.0
        self.prefix_hits = _metric_sum(families, "vllm:prefix_cache_hits") or 0.0
        self.generated_tokens = _metric_sum(families, "vllm:generation_tokens") or 0.0
        return EngineLoad(running=int(running), waiting=int(waiting))


def _current_node() -> str:
    # What langgraph.config.get_config reads, without its import and its exception outside a graph (benchmarks,
    # tests): this runs once per model call.
    config = var_child_runnable_config.get() or {}
    return config.get("metadata", {}).get("langgraph_node", "direct")


# ------------------------------------------------------------------------------------- the call path


class ModelOutputError(Exception):
    """The model's output was refused on every allowed attempt. Graphs record this, they do not crash."""

    def __init__(self, role: str, attempts: int, reason: str):
        super().__init__(f"{role}: no usable output after {attempts} attempts (last: {reason})")
        self.role = role
        self.reason = reason


class ModelServerUnreachable(ConnectionError):
    """One call could not reach the model server (refused, timed out, 5xx). A ConnectionError, so the graph's
    RetryPolicy retries the node; the message names the server."""


class ModelServerDown(RuntimeError):
    """The circuit breaker of a model server is open: `threshold` calls in a row could not reach it, so every
    further call fails at once instead of hammering it. Not a ConnectionError (LangGraph does not retry it):
    the runner sees it, stops admitting seeds and exits non-zero."""

    def __init__(self, server: str, failures: int, last: str):
        super().__init__(f"the model server at {server} is down: {failures} calls in a row could not reach it "
                         f"(last: {last}); start it or fix the URL in the recipe, then rerun to resume")
        self.server = server
        self.failures = failures


# vLLM's and OpenAI's wording for "the prompt (plus max_tokens) does not fit the model's context".
_CONTEXT_TOO_LONG = re.compile(r"context length|maximum model length|model length of|prompt is too long|"
                               r"max_tokens.{0,40}too large", re.I | re.S)


def _server_failure(exc: Exception) -> Literal["context", "transport"] | None:
    """How a failed call to an OpenAI-compatible server reads: its prompt too long, the server unreachable, or
    something else (None: raised as it is)."""
    try:
        import openai
    except ImportError:
        return None
    if isinstance(exc, openai.BadRequestError) and _CONTEXT_TOO_LONG.search(str(exc)):
        return "context"
    if isinstance(exc, (openai.APIConnectionError, openai.InternalServerError)):
        return "transport"
    return None


def _cut_off_reply(exc: Exception) -> AIMessage | None:
    """The reply inside the OpenAI client's LengthFinishReasonError, else None. Asked for `response_format`, the
    client raises instead of returning an output cut off at max_tokens, which crashed the seed and lost the call's
    lineage; as a reply that finished for "length" it is refused as runaway output and asked for again."""
    try:
        from openai import LengthFinishReasonError
    except ImportError:
        return None
    if not isinstance(exc, LengthFinishReasonError):
        return None
    reply, usage = exc.completion.choices[0].message if exc.completion.choices else None, exc.completion.usage
    tokens = None if usage is None else {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
                                         "total_tokens": usage.total_tokens}
    return AIMessage(content=(reply.content if reply is not None else None) or "", usage_metadata=tokens,
                     response_metadata={"finish_reason": "length"})


@dataclass
class Completion:
    text: str
    parsed: BaseModel | None
    record: CallRecord
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # LangChain form: name, args, id
    # When asked for (`top_logprobs`): per generated token, OpenAI's form {"token", "logprob", "top_logprobs":
    # [{"token", "logprob"}, ...]}. None when the back end gives none (the test fake).
    logprobs: list[dict[str, Any]] | None = None


def _message_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """OpenAI-style dicts, as chat templates take them: assistant `tool_calls` (arguments as objects, which is
    what Hugging Face templates expect) and `tool` turns with their call id."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    dicts = []
    for m in messages:
        turn: dict[str, Any] = {"role": roles.get(m.type, m.type), "content": m.content}
        if isinstance(m, AIMessage) and m.tool_calls:
            turn["tool_calls"] = [{"id": c["id"], "type": "function",
                                   "function": {"name": c["name"], "arguments": c["args"]}} for c in m.tool_calls]
        if isinstance(m, ToolMessage):
            turn["tool_call_id"], turn["name"] = m.tool_call_id, m.name
        dicts.append(turn)
    return dicts


_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def parse_hermes_tool_calls(text: str, offered: Sequence[str] = ()) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(content, tool calls, problems) of a reply in the Hermes format that Qwen-family chat templates teach:
    `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks after optional text. This is what vLLM's
    `hermes` tool parser reads on a server; in process it is done here. Small Qwen models often drop the tags
    and reply with the bare object (or a list of them): a whole reply of that shape naming an `offered` tool is
    a call too, not an answer."""
    bare = _bare_calls(text, offered)
    if bare:
        return "", bare, []
    calls, problems = [], []
    for i, block in enumerate(_HERMES_CALL.findall(text)):
        try:
            call = json.loads(block)
            calls.append({"name": call["name"], "args": call.get("arguments") or {}, "id": f"call_{i}",
                          "type": "tool_call"})
        except (json.JSONDecodeError, KeyError, TypeError):
            problems.append(f"tool call {i} is not a JSON object with a name: {block[:120]}")
    if "<tool_call>" in text and not calls and not problems:
        problems.append("an unclosed <tool_call> block")
    return _HERMES_CALL.sub("", text).strip(), calls, problems


def _bare_calls(text: str, offered: Sequence[str]) -> list[dict[str, Any]]:
    stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return []
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, dict) and i.get("name") in offered and isinstance(i.get("arguments", {}), dict)
                            for i in items):
        return []
    return [{"name": i["name"], "args": i.get("arguments") or {}, "id": f"call_{n}", "type": "tool_call"}
            for n, i in enumerate(items)]


class ModelClient:
    """A chat model plus the rules for calling it; shared by every role that uses the same model."""

    def __init__(self, chat: BaseChatModel, *, name: str, max_attempts: int = 3, server: str | None = None,
                 breaker_threshold: int = 5, server_load: ServerLoad | None = None):
        self.chat = chat
        self.server_load = server_load
        self.name = name
        self.max_attempts = max_attempts
        # The circuit breaker of a model server: consecutive calls that could not reach it, across all the
        # graph instances sharing this client; at `breaker_threshold` it opens for good (`server_down`).
        self.server = server
        self.breaker_threshold = breaker_threshold
        self.consecutive_failures = 0
        self.server_down: ModelServerDown | None = None

    async def complete(
        self,
        messages: Sequence[BaseMessage],
        *,
        role: str,
        sampling: Sampling,
        schema: type[BaseModel] | None = None,
        json_schema: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        check: Callable[[str], str | None] | None = None,
        subject: str | None = None,
        keep_truncated: bool = False,
        stop: list[str] | None = None,
        top_logprobs: int | None = None,
    ) -> Completion:
        """Call the model until its output is usable, at most `max_attempts` times.

        `schema` asks for structured output and parses it; `json_schema`, when given, is the grammar the model
        is held to instead of `schema`'s own (tighter: e.g. only the tools on offer, with their arguments), and
        the output is still parsed with `schema`. `tools` (OpenAI specs) offers the model's native tool calling:
        its calls come back in `Completion.tool_calls`. `check` returns a problem with the text (or None). `stop`
        ends the generation at any of these strings (not included in the text): a caller that acts between turns
        (runs a code block) stops the model where its own part begins. `top_logprobs` asks for the log
        probabilities of that many most likely tokens at each position (`Completion.logprobs`).
        `keep_truncated` takes an output cut off at max_tokens as it is instead of refusing it as runaway.
        """
        prompt = _message_dicts(messages)
        prompt_hash = hashlib.sha256(json.dumps([self.name, prompt], sort_keys=True).encode()).hexdigest()[:16]
        node = _current_node()
        log = current_call_log.get()
        if sampling.seed is not None and log is not None:
            sampling = sampling.model_copy(update={"seed": log.sampling_seed(sampling.seed, prompt_hash, subject)})
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            # A retry at temperature 0 would repeat the refused output word for word.
            call_sampling = sampling if attempt == 1 or sampling.temperature > 0 else sampling.model_copy(
                update={"temperature": 0.7})
            if call_sampling.seed is not None:
                call_sampling = call_sampling.model_copy(update={"seed": call_sampling.seed + attempt - 1})
            completion = await self._attempt(messages, prompt, prompt_hash, role, node, subject, call_sampling, schema,
                                             json_schema, tools, check, keep_truncated, stop, top_logprobs)
            if completion.record.error is None:
                return completion
            reason = completion.record.error
        raise ModelOutputError(role, self.max_attempts, reason)

    async def _attempt(self, messages, prompt, prompt_hash, role, node, subject, sampling, schema, json_schema,
                       tools, check, keep_truncated=False, stop=None, top_logprobs=None) -> Completion:
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        settings = sampling.model_dump()
        kwargs: dict[str, Any] = {name: value for name, value in settings.items() if value is not None}
        if schema is not None:
            json_schema = json_schema or _json_schema(schema)
            kwargs.update(structured_output_kwargs(self.chat, schema, json_schema))
        if tools:
            kwargs["tools"] = tools
        if top_logprobs:
            kwargs.update(logprobs=True, top_logprobs=top_logprobs)   # OpenAI's names; ChatVLLM reads the same
        text, usage, finish_reason, error, tool_calls, logprobs = "", {}, None, None, [], None
        if self.server_down is not None:
            raise ModelServerDown(self.server, self.server_down.failures, "the breaker is open")
        extra_body: dict[str, Any] = {}
        if _is_openai(self.chat) and "max_tokens" in kwargs:
            # LangChain renames it `max_completion_tokens`, OpenAI's newer name: vLLM reads both, but other
            # OpenAI-compatible servers (transformers serve) ignore that one and generate up to their own default.
            extra_body["max_tokens"] = kwargs.pop("max_tokens")
        if (seed := current_seed.get()) is not None:
            seed.sent += 1
            if isinstance(self.chat, ChatVLLM):
                kwargs["priority"] = seed.priority
            elif self.server_load is not None and self.server_load.is_vllm:
                extra_body["priority"] = seed.priority   # vLLM's extension of the OpenAI API
        if extra_body:
            kwargs["extra_body"] = extra_body
        try:
            try:
                # The role and template travel as run metadata: tracing shows them, test fakes answer per role.
                config = {"metadata": {"synthgraph_role": role, "synthgraph_prompt": getattr(messages, "name", None)}}
                if self.server_load is not None:
                    self.server_load.outstanding += 1
                message: AIMessage = await self._invoke(list(messages), config, stop, kwargs)
            except Exception as exc:
                if (cut_off := _cut_off_reply(exc)) is not None:
                    message = cut_off
                elif (converted := self._server_error(exc)) is exc:
                    raise
                else:
                    raise converted from exc
            finally:
                if self.server_load is not None:
                    self.server_load.outstanding -= 1
            self.consecutive_failures = 0
            text = message.content if isinstance(message.content, str) else json.dumps(message.content)
            usage = message.usage_metadata or {}
            finish_reason = (message.response_metadata or {}).get("finish_reason")
            logprobs = ((message.response_metadata or {}).get("logprobs") or {}).get("content")
            tool_calls = list(message.tool_calls)
            if message.invalid_tool_calls:
                error = f"malformed tool call: {message.invalid_tool_calls[0].get('error') or message.invalid_tool_calls[0]}"
        except PromptTooLong as exc:  # transport errors propagate to the graph's RetryPolicy (or stop the run)
            error = str(exc)
        parsed = None
        answer = text   # what `check` and the caller read; the record keeps the output as written
        if error is None:
            if not text.strip() and not tool_calls:
                error = "empty output"
            elif finish_reason == "length" and not keep_truncated:
                error = f"runaway output: stopped at max_tokens={sampling.max_tokens} without finishing"
            elif schema is not None and not tool_calls:
                answer = _unfenced(text)
                try:
                    parsed = schema.model_validate_json(answer)
                except ValidationError as exc:
                    error = f"malformed structured output: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
            if error is None and check is not None and not tool_calls:
                error = check(answer)
        # Every field is built right here from typed values: constructed, not validated (a row per call).
        record = CallRecord.model_construct(
            role=role,
            node=node,
            subject=subject,
            model=self.name,
            prompt=prompt,
            prompt_hash=prompt_hash,
            completion=text if not tool_calls else json.dumps({"content": text, "tool_calls": tool_calls}),
            prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
            latency_s=time.perf_counter() - t0,
            finish_reason=finish_reason,
            sampling={**settings, **({"stop": stop} if stop else {})},
            error=error,
            started_at=started,
            json_schema=json_schema if schema is not None else None,
        )
        log = current_call_log.get()
        if log is not None:
            log.add(record)
        return Completion(text=answer, parsed=parsed, record=record, tool_calls=tool_calls, logprobs=logprobs)

    async def _invoke(self, messages: list[BaseMessage], config: dict, stop: list[str] | None,
                      kwargs: dict[str, Any]) -> AIMessage:
        """`chat.ainvoke`, or, for synthgraph's own chat models when no callback handler would hear of the call
        (no tracer, no streaming, no callbacks: LangChain's own test), their `_agenerate` at once. LangChain's
        path costs ~120 us and nine turns of the event loop per call even with nobody listening: at hundreds
        of calls a second that was a sixth of a run's CPU. The reply is the same message either way."""
        chat = self.chat
        uncached = chat.cache is False or (chat.cache is None and get_llm_cache() is None)
        if isinstance(chat, _DIRECT_CHAT_MODELS) and uncached and chat.rate_limiter is None:
            # Handlers come from the enclosing run (the graph node's callbacks), the model's own, verbosity and
            # the tracing environment; tags and metadata add none, so they are left out of the question.
            inherited = (var_child_runnable_config.get() or {}).get("callbacks")
            if isinstance(inherited, BaseCallbackManager):
                # Its handlers are all a child run takes from it; asking with them alone spares copying its tags
                # and metadata (20 us a call against 9).
                inherited = inherited.handlers
            if not AsyncCallbackManager.configure(inherited, chat.callbacks, chat.verbose).handlers:
                # Nobody hears of the call: the metadata only reaches the model itself (the test fake reads it).
                run = AsyncCallbackManagerForLLMRun(run_id=_UNHEARD_RUN, handlers=[], inheritable_handlers=[],
                                                    metadata={**(chat.metadata or {}), **config["metadata"]})
                result = await chat._agenerate(messages, stop=stop, run_manager=run, **kwargs)
                return result.generations[0].message
        return await chat.ainvoke(messages, config=config, stop=stop, **kwargs)

    def _server_error(self, exc: Exception) -> Exception:
        """What a failed call to a model server becomes: PromptTooLong (a refused output, recorded per call,
        as in process), ModelServerUnreachable naming the server, or ModelServerDown once the breaker opens."""
        if self.server is None:
            return exc
        failure = _server_failure(exc)
        if failure == "context":
            self.consecutive_failures = 0  # it answered
            return PromptTooLong(f"{self.server} refused the prompt: {_first_line(exc)}")
        if failure != "transport":
            return exc
        self.consecutive_failures += 1
        detail = f"{type(exc).__name__}: {_first_line(exc)}"
        if self.consecutive_failures >= self.breaker_threshold:
            self.server_down = self.server_down or ModelServerDown(self.server, self.consecutive_failures, detail)
            return ModelServerDown(self.server, self.consecutive_failures, detail)
        return ModelServerUnreachable(f"model server {self.server}: {detail}")


# The run id of a call nobody hears of: it is never reported, and a fresh uuid4 costs a system call per call.
_UNHEARD_RUN = uuid.UUID(int=0)


# A JSON answer inside a Markdown code fence and nothing else, as models write one where no grammar holds them to
# the schema (transformers serve ignores `response_format`).
_FENCED = re.compile(r"\s*```(?:json)?[ \t]*\n(.*?)\n[ \t]*```\s*", re.DOTALL)


def _unfenced(text: str) -> str:
    match = _FENCED.fullmatch(text)
    return match.group(1) if match else text


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def structured_output_kwargs(chat: BaseChatModel, schema: type[BaseModel],
                             json_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    json_schema = json_schema or _json_schema(schema)
    if _is_openai(chat):
        # The standard OpenAI form; vLLM's server turns it into a grammar-constrained generation.
        return {"response_format": {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema}}}
    return {"json_schema": json_schema}


@functools.cache
def _json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    # Pydantic rebuilds a schema on every call; a role asks for the same one on every call it makes.
    return schema.model_json_schema()


def _is_openai(chat: BaseChatModel) -> bool:
    return type(chat).__name__ == "ChatOpenAI"


# ------------------------------------------------------------------------------------ vLLM in-process


class VLLMEngine:
    """One in-process vLLM `AsyncLLM` per model, loaded once, shared by every role that names it."""

    def __init__(self, model_path: str, settings: EngineSettings, served_name: str,
                 engine_args: dict[str, Any] | None = None):
        self.model_path = model_path
        self.settings = settings
        self.served_name = served_name
        # More of vLLM's AsyncEngineArgs, as given (a Ray worker's tensor_parallel_size on a GPU cluster).
        self.engine_args = dict(engine_args or {})
        self._engine = None
        self._tokenizer = None
        self._lock = asyncio.Lock()
        # The thread that starts the engine's processes: they are bound to it (engine_lifetime), so it lives
        # until `shutdown`, unlike the loop's pooled threads.
        self._owner: ThreadPoolExecutor | None = None
        self.watch = _SchedulerWatch()

    async def start(self):
        async with self._lock:
            if self._engine is None:
                self._owner = self._owner or ThreadPoolExecutor(1, thread_name_prefix=f"vllm-owner-{self.served_name}")
                self._engine, self._tokenizer = await asyncio.get_running_loop().run_in_executor(self._owner, self._load)
        return self._engine

    def _load(self):
        _configure_vllm_env(self.settings)
        bind_engine_processes()
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=self.model_path,
            served_model_name=self.served_name,
            max_model_len=self.settings.max_model_len,
            enforce_eager=self.settings.enforce_eager,
            dtype=self.settings.dtype,
            seed=self.settings.seed,
            max_num_seqs=self.settings.max_num_seqs,
            gpu_memory_utilization=self.settings.gpu_memory_utilization,
            # Without it the 0.5B model emitted whitespace inside JSON until max_tokens (3 of 8 valid; 8 of 8
            # with it). Only the engine-level setting takes effect, and not with backend="auto".
            structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
            # Each request carries its seed's admission order as priority: queued requests of earlier seeds
            # run first, so started seeds finish before new ones spread over the batch.
            scheduling_policy="priority",
            **{**self._cache_args(), **self.engine_args},
        )
        engine = AsyncLLM.from_engine_args(args, stat_loggers=[self.watch.factory])
        return engine, engine.get_tokenizer()

    def _cache_args(self) -> dict[str, Any]:
        """On CPU the KV cache has the size the settings give, to the byte. (Set through the environment, whole
        GiB only, and once per process: a second engine kept the first's size.) A GPU sizes it by
        gpu_memory_utilization."""
        from vllm.platforms import current_platform

        return {"kv_cache_memory_bytes": int(self.settings.kv_cache_gib * 2**30)} if current_platform.is_cpu() else {}

    def load(self) -> EngineLoad | None:
        """Running and waiting requests, None before the engine is loaded. The count of unfinished requests
        is the front end's own, current to the moment; the scheduler's waiting count (one step old) adds the
        requests it holds back for want of KV-cache room."""
        if self._engine is None:
            return None
        capacity = self.settings.max_num_seqs
        unfinished = self._engine.get_num_unfinished_requests()
        waiting = max(unfinished - capacity, min(self.watch.waiting, unfinished))
        return EngineLoad(running=unfinished - waiting, waiting=waiting, capacity=capacity)

    @property
    def prefix_caching(self) -> bool:
        return bool(self._engine is not None and self._engine.vllm_config.cache_config.enable_prefix_caching)

    async def generate(self, messages: list[dict[str, Any]], sampling: dict[str, Any],
                       tools: list[dict[str, Any]] | None = None, priority: int = 0,
                       ) -> tuple[str, int, int, str | None, list[dict[str, Any]] | None]:
        """(text, prompt tokens, completion tokens, finish reason, logprobs). `sampling` may hold `top_logprobs`:
        then logprobs is, per generated token, OpenAI's {"token", "logprob", "top_logprobs": [...]}. A lower
        `priority` is scheduled first."""
        engine = await self.start()  # imports vLLM off the event loop (seconds of file IO) before the line below
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        # The model's own chat template renders offered tools (and earlier calls and results) its native way.
        text = self._tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
        token_ids = self._tokenizer.encode(text, add_special_tokens=False)
        if len(token_ids) >= self.settings.max_model_len:
            raise PromptTooLong(f"prompt of {len(token_ids)} tokens exceeds max_model_len={self.settings.max_model_len}")
        schema = sampling.pop("json_schema", None)
        max_tokens = min(sampling.pop("max_tokens", 512), self.settings.max_model_len - len(token_ids))
        top_logprobs = sampling.pop("top_logprobs", None)
        params = SamplingParams(
            **sampling,
            max_tokens=max_tokens,
            logprobs=top_logprobs,
            output_kind=RequestOutputKind.FINAL_ONLY,
            structured_outputs=StructuredOutputsParams(json=schema) if schema else None,
        )
        final = None
        async for output in engine.generate({"prompt_token_ids": token_ids}, params, uuid.uuid4().hex,
                                            priority=priority):
            final = output
        out = final.outputs[0]
        logprobs = None
        if top_logprobs and out.logprobs is not None:
            decode = self._tokenizer.decode
            logprobs = [
                {"token": decode([token_id]), "logprob": position[token_id].logprob,
                 "top_logprobs": [{"token": decode([t]), "logprob": lp.logprob}
                                  for t, lp in sorted(position.items(), key=lambda item: -item[1].logprob)]}
                for token_id, position in zip(out.token_ids, out.logprobs)
            ]
        return out.text, len(token_ids), len(out.token_ids), out.finish_reason, logprobs

    def shutdown(self) -> None:
        if self._engine is not None:
            engine, self._engine, self._tokenizer = self._engine, None, None
            engine.shutdown()
            # AsyncLLM.__del__ shuts down again; at interpreter exit vLLM's modules are already torn down
            # and it prints a TypeError traceback after a clean run. Once is enough.
            engine.shutdown = lambda *args, **kwargs: None
        if self._owner is not None:
            self._owner.shutdown(wait=False)
            self._owner = None


class PromptTooLong(ValueError):
    """The prompt itself does not fit the engine; retrying will not help."""


def _configure_vllm_env(settings: EngineSettings) -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its INFO/WARNING lines drown the progress display
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # vLLM on CPU reserves one core for itself by default; on a 2-core machine that halves throughput.
    if (os.cpu_count() or 1) <= 4:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")


def chat_result(text: str, prompt_tokens: int, completion_tokens: int, finish_reason: str | None,
                model_name: str, *, tools: list[dict[str, Any]] | None = None,
                logprobs: list[dict[str, Any]] | None = None) -> ChatResult:
    """A reply in LangChain's form, with the usage and finish reason the lineage records. When tools were
    offered, Hermes-format calls in the text become the message's `tool_calls`."""
    tool_calls, invalid = [], []
    if tools:
        text, tool_calls, problems = parse_hermes_tool_calls(text, [t["function"]["name"] for t in tools])
        invalid = [{"name": None, "args": None, "id": None, "error": p, "type": "invalid_tool_call"} for p in problems]
    message = AIMessage(
        content=text,
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        usage_metadata={"input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens},
        response_metadata={"finish_reason": finish_reason, "model_name": model_name,
                           **({"logprobs": {"content": logprobs}} if logprobs is not None else {})},
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


class ChatVLLM(BaseChatModel):
    """LangChain chat model over a shared in-process `VLLMEngine`."""

    model_name: str
    _engine: VLLMEngine = PrivateAttr()

    def __init__(self, engine: VLLMEngine, **kwargs):
        super().__init__(model_name=engine.served_name, **kwargs)
        self._engine = engine

    @property
    def _llm_type(self) -> str:
        return "vllm-inprocess"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError("ChatVLLM is async-only: use ainvoke (the graphs do)")

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        sampling = {k: v for k, v in kwargs.items()
                    if k in {"temperature", "top_p", "max_tokens", "seed", "json_schema", "top_logprobs"}}
        if stop:
            sampling["stop"] = list(stop)
        tools = kwargs.get("tools")
        text, prompt_tokens, completion_tokens, finish_reason, logprobs = await self._engine.generate(
            _message_dicts(messages), sampling, tools=tools, priority=kwargs.get("priority", 0)
        )
        return chat_result(text, prompt_tokens, completion_tokens, finish_reason, self.model_name, tools=tools,
                           logprobs=logprobs)


# ------------------------------------------------------------------------------------------- the fake


class ScriptedChatModel(BaseChatModel):
    """A deterministic chat model for unit tests: `respond(messages, kwargs) -> str` writes every reply. Besides
    the sampling kwargs, `kwargs` holds the calling `role` and the `prompt` template's name (None for a prompt
    not rendered from a template), from the call's metadata.

    Token counts are word counts, so throughput figures stay meaningful in orchestration benchmarks.
    """

    respond: Callable[[list[BaseMessage], dict[str, Any]], str]
    finish_reason: str = "stop"

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        metadata = run_manager.metadata if run_manager is not None else {}
        text = self.respond(list(messages), {**kwargs, "role": metadata.get("synthgraph_role"),
                                             "prompt": metadata.get("synthgraph_prompt")})
        prompt_tokens = sum(len(str(m.content).split()) for m in messages)
        completion_tokens = len(text.split())
        return chat_result(text, prompt_tokens, completion_tokens, self.finish_reason, "fake", tools=kwargs.get("tools"))

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._generate(messages, stop, run_manager, **kwargs)


# Chat models whose replies `ModelClient` may take from `_agenerate` directly: they build the whole message
# themselves (usage, finish reason) and use no LangChain service (cache, rate limiter) on the way.
_DIRECT_CHAT_MODELS = (ChatVLLM, ScriptedChatModel)


# ------------------------------------------------------------------------------------------ building


class ModelPool:
    """Builds one `ModelClient` per distinct spec and owns the engines behind them."""

    def __init__(self, settings: EngineSettings | None = None, *, max_attempts: int = 3,
                 engine_args: dict[str, Any] | None = None):
        self.settings = settings or EngineSettings()
        self.max_attempts = max_attempts
        self.engine_args = engine_args  # passed to every in-process engine (VLLMEngine.engine_args)
        self._clients: dict[ModelSpec, ModelClient] = {}
        self._engines: list[VLLMEngine] = []
        self._servers: dict[str, ServerLoad] = {}

    def client(self, spec: ModelSpec) -> ModelClient:
        if spec not in self._clients:
            server_load = None
            if spec.provider == "openai":
                server_load = self._servers.setdefault(spec.base_url, ServerLoad(spec.base_url))
            self._clients[spec] = ModelClient(self._build(spec), name=str(spec), max_attempts=self.max_attempts,
                                              server=spec.base_url, server_load=server_load)
        return self._clients[spec]

    async def loads(self) -> list[EngineLoad]:
        """The load of every back end that reports one (in-process engines, vLLM servers); empty when none
        does (fakes, other servers): then only the recipe's fixed concurrency paces admission."""
        loads = [engine.load() for engine in self._engines]
        loads += await asyncio.gather(*(server.load() for server in self._servers.values()))
        return [load for load in loads if load is not None]

    def server_down(self) -> ModelServerDown | None:
        """The first model server whose breaker opened, if any: the run cannot go on without it."""
        return next((c.server_down for c in self._clients.values() if c.server_down is not None), None)

    def _build(self, spec: ModelSpec) -> BaseChatModel:
        if spec.provider == "openai":
            from langchain_openai import ChatOpenAI

            return ChatOpenAI(
                base_url=spec.base_url,
                model=spec.model,
                api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                max_retries=2,
                timeout=600,
            )
        engine = VLLMEngine(resolve_model_path(spec.model), self.settings, served_name=spec.model,
                            engine_args=self.engine_args)
        self._engines.append(engine)
        return ChatVLLM(engine)

    async def start(self) -> None:
        """Load every in-process engine now, so the load is not billed to the first graph instance."""
        await asyncio.gather(*(engine.start() for engine in self._engines))

    def shutdown(self) -> None:
        for engine in self._engines:
            engine.shutdown()


_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def preflight(spec: ModelSpec | str, *, timeout_s: float = 5.0) -> str | None:
    """Whether a model can be used, checked before anything loads: None, or one line naming the model (or its
    server) and what to do. A shipped name must have its weights installed; a folder must hold a config.json;
    a hub-style name must be in the local Hugging Face cache (nothing is downloaded at run time); a server
    must list the name in its `GET /models` or, where it does not, answer a one-token chat turn for it."""
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    return _preflight_server(spec, timeout_s) if spec.provider == "openai" else _preflight_local(spec.model)


def _preflight_local(name: str) -> str | None:
    from synthgraph.agents import shipped_models

    if name in shipped_models.SHIPPED:
        if shipped_models.is_prepared(name):
            return None
        try:
            shipped_models.locate_parts(shipped_models.SHIPPED[name])
        except shipped_models.ShippedModelError as exc:
            return str(exc)
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        return None if (path / "config.json").is_file() else (
            f"model {name!r}: the folder {path} has no config.json, so it is not a Hugging Face model folder")
    if path.exists():
        return f"model {name!r}: {path} is a file; give a Hugging Face model folder (one with a config.json)"
    if _HUB_NAME.fullmatch(name):
        try:
            from huggingface_hub import constants, try_to_load_from_cache
        except ImportError:
            return f"model {name!r}: a hub-style name needs huggingface_hub (pip install 'synthgraph[models]')"
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return None
        return (f"model {name!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and nothing is "
                f"downloaded at run time: fetch it first (huggingface-cli download {name}) or give a local folder")
    if "/" in name or name.startswith(("~", ".")):
        return f"model {name!r}: no such folder"
    known = ", ".join(sorted(shipped_models.SHIPPED))
    return (f"model {name!r} is neither a shipped model ({known}) nor an existing folder nor a hub-style "
            "ORG/NAME: `synthgraph models` lists the shipped ones")


def _preflight_server(spec: ModelSpec, timeout_s: float, probe_timeout_s: float = 120.0) -> str | None:
    import httpx

    base_url = spec.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', 'EMPTY')}"}
    url = f"{base_url}/models"
    try:
        response = httpx.get(url, timeout=timeout_s, headers=headers)
    except httpx.HTTPError as exc:
        return (f"cannot reach the model server at {spec.base_url} ({type(exc).__name__}: {exc}): start it "
                f"(e.g. vllm serve {spec.model}) or fix the URL")
    served = _listed_models(response)
    if served is not None and served.get(spec.model) == "vllm":
        return None
    # Only vLLM's listing is what it serves. transformers serve lists its Hugging Face cache (and answers HTTP 500
    # without one), not the model it was started with, and a server pinned to one model refuses the others it
    # lists; other servers may list models they load on demand. A one-token chat turn for the name settles it.
    refusal = _chat_refusal(base_url, spec.model, headers, probe_timeout_s)
    if refusal is None:
        return None
    listing = (f"lists {', '.join(served) or 'nothing'}" if served is not None else
               f"answered GET {url} with HTTP {response.status_code}" if response.status_code != 200 else
               f"answered GET {url} with something other than a model list")
    return (f"the model server at {spec.base_url} does not serve {spec.model!r}: it {listing}, and a one-token chat "
            f"turn for that name was answered with {refusal}. Fix the model name, or the URL if it is not the "
            "server's OpenAI-compatible base (ending in /v1; an API key goes in OPENAI_API_KEY)")


def _listed_models(response) -> dict[str, str] | None:
    """The model ids of an OpenAI `GET /models` answer, each with its `owned_by` ("vllm" from vLLM), None when
    it is not one."""
    if response.status_code != 200:
        return None
    try:
        return {model["id"]: str(model.get("owned_by", "")) for model in response.json()["data"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _chat_refusal(base_url: str, model: str, headers: dict[str, str], timeout_s: float) -> str | None:
    """None when the server answers a one-token chat turn for `model`, else what it answered instead (one line).
    A server that loads models on demand loads it now, hence the long timeout."""
    import httpx

    try:
        response = httpx.post(f"{base_url}/chat/completions", timeout=timeout_s, headers=headers,
                              json={"model": model, "max_tokens": 1,
                                    "messages": [{"role": "user", "content": "Say OK."}]})
    except httpx.TimeoutException as exc:
        return f"no answer within {timeout_s:.0f} s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if response.status_code == 200 and body.get("choices"):
        return None
    # vLLM and OpenAI put the reason in error.message, FastAPI servers (transformers serve) in detail
    error = body.get("error")
    detail = (error.get("message") if isinstance(error, dict) else error) or body.get("detail") or response.text
    return f"HTTP {response.status_code}: {(str(detail).strip().splitlines() or [''])[0][:200].rstrip('.')}"


def resolve_model_path(name: str) -> str:
    """A shipped model name -> its prepared Hugging Face folder; a path or hub-style name passes through."""
    from synthgraph.agents import shipped_models

    if name in shipped_models.SHIPPED:
        return str(shipped_models.prepare_model(name))
    if Path(name).exists():
        return name
    if "/" in name:  # a hub-style name: only resolvable from a local HF cache (offline) or on a GPU machine
        return name
    known = ", ".join(sorted(shipped_models.SHIPPED))
    raise ValueError(f"model {name!r} is neither a shipped model ({known}) nor an existing folder")


def user_message(text: str) -> HumanMessage:
    return HumanMessage(content=text)


def system_message(text: str) -> SystemMessage:
    return SystemMessage(content=text)
