"""An OpenAI-compatible model server, real HTTP on 127.0.0.1: a prompt too long for it is one refused call, a
dead server trips the circuit breaker after a bounded number of calls, and pre-flight names what is wrong."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from synthgraph.agents.models import (
    CallLog, ModelOutputError, ModelPool, ModelServerDown, ModelServerUnreachable, ModelSpec, Sampling,
    current_call_log, preflight, user_message,
)
from synthgraph.graphs.cli import app

# What vLLM's server answers when prompt + max_tokens do not fit (HTTP 400).
CONTEXT_ERROR = {"error": {"object": "error", "type": "BadRequestError", "code": 400, "param": None,
                           "message": "This model's maximum context length is 2048 tokens. However, you requested "
                                      "4000 tokens (3488 in the messages, 512 in the completion)."}}


CACHED_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"


class FakeServer:
    """A tiny OpenAI-compatible endpoint serving one model; prompts containing LONG exceed its context.
    `listing`: what its GET /v1/models answers: the model ("served", as vLLM), other models ("cache", as
    transformers serve lists its Hugging Face cache) or HTTP 500 ("error", transformers serve without a cache).
    A chat turn for another model is refused as vLLM refuses it, or, with `pinned`, as transformers serve does."""

    def __init__(self, model: str = "fake-model", listing: str = "served", pinned: bool = False):
        self.model = model
        self.requests = 0
        self.chat_requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.requests += 1
                if self.path != "/v1/models":
                    self.reply(404, {"error": {"message": "not found"}})
                elif listing == "error":
                    self.reply(500, {"detail": "Internal Server Error"})
                elif listing == "served":
                    self.reply(200, {"object": "list", "data": [{"id": server.model, "object": "model",
                                                                 "owned_by": "vllm"}]})
                else:
                    self.reply(200, {"object": "list", "data": [{"id": CACHED_MODEL, "object": "model",
                                                                 "owned_by": "HuggingFaceTB"}]})

            def do_POST(self):
                server.requests += 1
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self.reply(404, {"detail": "Not Found"})
                    return
                server.chat_requests += 1
                if request["model"] != server.model:
                    if pinned:
                        self.reply(400, {"detail": f"Server is pinned to '{server.model}'; requested "
                                                   f"'{request['model']}'."})
                    else:
                        self.reply(404, {"error": {"object": "error", "type": "NotFoundError", "code": 404,
                                                   "message": f"The model `{request['model']}` does not exist."}})
                    return
                if "LONG" in json.dumps(request["messages"]):
                    self.reply(400, CONTEXT_ERROR)
                    return
                rambles = "RAMBLE" in json.dumps(request["messages"])  # a JSON answer cut off at max_tokens
                self.reply(200, {
                    "id": "c1", "object": "chat.completion", "created": 0, "model": server.model,
                    "choices": [{"index": 0, "finish_reason": "length" if rambles else "stop",
                                 "message": {"role": "assistant",
                                             "content": '{"reason": "First, the' if rambles else "4"}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 16 if rambles else 1,
                              "total_tokens": 21 if rambles else 6}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.parse(f"openai:http://127.0.0.1:{self.port}/v1:{self.model}")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ask(client, text: str):
    return await client.complete([user_message(text)], role="solver", sampling=Sampling(max_tokens=16))


def test_a_prompt_too_long_for_the_server_is_a_refused_call_not_a_crash(server):
    client = ModelPool(max_attempts=3).client(server.spec)
    log = CallLog()

    async def go():
        current_call_log.set(log)
        assert (await ask(client, "What is 2+2?")).text == "4"
        with pytest.raises(ModelOutputError, match="maximum context length"):
            await ask(client, "LONG " * 10)

    asyncio.run(go())
    refused = [r for r in log.records if r.error]
    assert len(refused) == 3 and all(str(server.port) in r.error for r in refused)
    assert server.requests == 1 + 3  # one request per attempt: no client-side or node retries on a 400
    assert client.consecutive_failures == 0 and client.server_down is None


class Verdict(BaseModel):
    reason: str
    score: int


def test_structured_output_cut_off_at_max_tokens_is_a_refused_call_not_a_crash(server):
    # Asked for response_format, the OpenAI client raises LengthFinishReasonError instead of returning the reply
    client = ModelPool(max_attempts=2).client(server.spec)
    log = CallLog()

    async def go():
        current_call_log.set(log)
        with pytest.raises(ModelOutputError, match="runaway output: stopped at max_tokens=16"):
            await client.complete([user_message("RAMBLE on")], role="critic", sampling=Sampling(max_tokens=16),
                                  schema=Verdict)

    asyncio.run(go())
    assert [(r.completion, r.finish_reason, r.completion_tokens) for r in log.records] == [
        ('{"reason": "First, the', "length", 16)] * 2   # both attempts are lineage
    assert client.consecutive_failures == 0


def test_a_dead_server_trips_the_breaker_after_a_bounded_number_of_calls(server):
    pool = ModelPool(max_attempts=3)
    client = pool.client(server.spec)
    url = server.spec.base_url

    async def seed(i: int) -> str:
        # As a graph node under RetryPolicy(max_attempts=3): transport errors are retried, the open breaker is not.
        for _ in range(3):
            try:
                await ask(client, f"seed {i}")
                return "ok"
            except ModelServerUnreachable as exc:
                assert url in str(exc)
            except ModelServerDown as exc:
                assert url in str(exc)
                return "down"
        return "gave up"

    async def go():
        assert await seed(0) == "ok"
        server.stop()  # the server dies
        died = time.perf_counter()
        outcomes = await asyncio.gather(*(seed(i) for i in range(16)))  # 16 seeds in flight
        opened = time.perf_counter()
        later = time.perf_counter()
        with pytest.raises(ModelServerDown):
            await ask(client, "one more")
        return outcomes, opened - died, time.perf_counter() - later

    outcomes, to_open, refused_in = asyncio.run(go())
    assert set(outcomes) == {"down"}
    assert pool.server_down() is client.server_down and client.server_down.failures == client.breaker_threshold
    assert refused_in < 0.05  # the open breaker answers at once, without the network
    calls = client.breaker_threshold
    print(f"breaker: opened {to_open:.2f} s after the server died, after {calls} failed calls "
          f"({calls * 3} connection attempts with the client's 2 retries each); 16 seeds stopped")


def test_preflight_names_what_is_wrong_with_each_kind_of_model(server, tmp_path):
    assert preflight(server.spec) is None
    assert server.chat_requests == 0  # a listed model costs the server no generation
    wrong_name = preflight(f"openai:{server.spec.base_url}:nope")
    assert "does not serve 'nope'" in wrong_name and "fake-model" in wrong_name
    assert "HTTP 404: The model `nope` does not exist" in wrong_name
    no_v1 = preflight(f"openai:http://127.0.0.1:{server.port}:fake-model")
    assert "answered GET http://127.0.0.1:" in no_v1 and "HTTP 404: Not Found" in no_v1 and "(ending in /v1" in no_v1
    dead = preflight(f"openai:http://127.0.0.1:{closed_port()}/v1:x", timeout_s=2)
    assert dead.startswith("cannot reach the model server at http://127.0.0.1:")

    assert "neither a shipped model" in preflight("vllm:qwen2.5-coder-0.5") and "qwen2.5-coder-0.5b" in preflight(
        "vllm:qwen2.5-coder-0.5")
    assert "not in the local Hugging Face cache" in preflight("vllm:Qwen/Nope") and "Qwen/Nope" in preflight(
        "vllm:Qwen/Nope")
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in preflight(f"vllm:{tmp_path / 'empty'}")
    assert "no such folder" in preflight(f"vllm:{tmp_path / 'missing'}")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert preflight(f"vllm:{tmp_path / 'hf'}") is None


@pytest.mark.parametrize("listing", ["cache", "error"])
def test_preflight_takes_a_model_its_server_does_not_list_once_it_answers_a_chat_turn(listing):
    # transformers serve lists its Hugging Face cache, not the folder it was started with (HTTP 500 without a cache)
    fake = FakeServer("/models/smollm2-135m", listing=listing, pinned=True)
    try:
        assert preflight(fake.spec) is None
        assert fake.chat_requests == 1
        wrong = preflight(f"openai:{fake.spec.base_url}:/models/smollm2-136m")
        assert "HTTP 400: Server is pinned to '/models/smollm2-135m'; requested '/models/smollm2-136m'" in wrong
        assert wrong.startswith("the model server at http://127.0.0.1:") and "\n" not in wrong
        assert (f"lists {CACHED_MODEL}" if listing == "cache" else "with HTTP 500") in wrong
    finally:
        fake.stop()


def test_preflight_refuses_a_model_a_pinned_server_lists_but_does_not_serve():
    # transformers serve started with one model still lists every model of its cache: only vLLM's listing is
    # taken at its word, so every call of the run would have been refused
    fake = FakeServer("/models/smollm2-135m", listing="cache", pinned=True)
    try:
        wrong = preflight(f"openai:{fake.spec.base_url}:{CACHED_MODEL}")
        assert fake.chat_requests == 1
        assert f"does not serve '{CACHED_MODEL}': it lists {CACHED_MODEL}, and a one-token chat turn" in wrong
        assert f"HTTP 400: Server is pinned to '/models/smollm2-135m'; requested '{CACHED_MODEL}'" in wrong
    finally:
        fake.stop()


def recipe_file(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"name: t\ngraph: reasoning\nmodel: {model}\nseeds:\n  inline:\n"
                    "    - {problem: 'What is 2+2?', answer: '4'}\n")
    return path


def test_validate_and_run_refuse_a_misspelt_model_in_one_line(tmp_path):
    cli = CliRunner()
    for model in ("vllm:qwen2.5-coder-0.5", "vllm:Qwen/Nope"):
        recipe = recipe_file(tmp_path, model)
        for command in (["validate", str(recipe)], ["run", str(recipe), "--db", str(tmp_path / "s.duckdb")]):
            result = cli.invoke(app, command)
            said = " ".join(result.output.split())
            assert result.exit_code == 2, result.output
            assert said.startswith("error: model ") and model.removeprefix("vllm:") in said
            assert "Traceback" not in result.output
    assert not (tmp_path / "s.duckdb").exists()  # refused before anything was opened or loaded

    bare = cli.invoke(app, ["run", str(recipe_file(tmp_path, "vllm:qwen2.5-coder-0.5b")), "--model", "llama"])
    assert bare.exit_code == 2
    said = " ".join(bare.output.split())
    assert said.startswith("error: --model llama: model spec 'llama' must look like") and "pydantic" not in said
