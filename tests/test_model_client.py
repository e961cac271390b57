"""ModelClient's call path: synthgraph's own chat models are called directly unless a callback handler listens,
and the reply and its lineage are the same either way; a refused output is asked for again, up to the limit."""

from __future__ import annotations

import asyncio

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.context import collect_runs

import pytest
from pydantic import BaseModel

from synthgraph.agents.models import CallLog, ModelClient, ModelOutputError, Sampling, ScriptedChatModel, current_call_log
from synthgraph.agents.prompting import RenderedPrompt

MESSAGES = RenderedPrompt("reasoning_solver", [SystemMessage("You solve problems."), HumanMessage("2 + 2?")])


def scripted(seen: list[dict]) -> ScriptedChatModel:
    def respond(messages, kwargs):
        seen.append(kwargs)
        return "2 + 2 = 4\n#### 4"

    return ScriptedChatModel(respond=respond)


class ChatStarts(AsyncCallbackHandler):
    def __init__(self):
        self.starts = 0

    async def on_chat_model_start(self, serialized, messages, **kwargs):
        self.starts += 1


async def complete(client: ModelClient, sampling: Sampling = Sampling(max_tokens=64), **kwargs):
    current_call_log.set(log := CallLog())
    completion = await client.complete(MESSAGES, role="solver", sampling=sampling, **kwargs)
    return completion, log.records


def test_a_call_nobody_listens_to_reaches_the_model_with_its_role_and_template():
    seen: list[dict] = []
    completion, records = asyncio.run(complete(ModelClient(scripted(seen), name="fake")))
    assert completion.text == "2 + 2 = 4\n#### 4"
    assert seen[0]["role"] == "solver" and seen[0]["prompt"] == "reasoning_solver" and seen[0]["max_tokens"] == 64
    record = records[0]
    assert (record.prompt_tokens, record.completion_tokens, record.finish_reason) == (6, 7, "stop")


def test_a_callback_handler_hears_every_call():
    seen: list[dict] = []
    handler = ChatStarts()
    chat = scripted(seen).model_copy(update={"callbacks": [handler]})
    completion, records = asyncio.run(complete(ModelClient(chat, name="fake")))
    assert handler.starts == 1  # LangChain's own path, callbacks and all
    assert completion.text == "2 + 2 = 4\n#### 4" and seen[0]["role"] == "solver"
    assert records[0].completion_tokens == 7 and records[0].finish_reason == "stop"


def test_a_handler_of_the_enclosing_run_hears_the_call():
    """A graph node's callbacks (here a runnable's) reach the model calls made inside it."""
    seen: list[dict] = []
    handler = ChatStarts()

    async def node(_):
        return await complete(ModelClient(scripted(seen), name="fake"))

    completion, records = asyncio.run(RunnableLambda(node).ainvoke(None, config={"callbacks": [handler]}))
    assert handler.starts == 1
    assert completion.text == "2 + 2 = 4\n#### 4" and seen[0]["role"] == "solver"


def test_a_tracer_in_the_context_sees_the_call():
    seen: list[dict] = []

    async def traced():
        with collect_runs() as runs:
            await complete(ModelClient(scripted(seen), name="fake"))
        return runs.traced_runs

    runs = asyncio.run(traced())
    assert [run.run_type for run in runs] == ["llm"]
    assert runs[0].extra["metadata"]["synthgraph_role"] == "solver"


def replies(*texts: str) -> tuple[ScriptedChatModel, list[dict]]:
    seen: list[dict] = []
    queue = list(texts)

    def respond(messages, kwargs):
        seen.append(kwargs)
        return queue.pop(0)

    return ScriptedChatModel(respond=respond), seen


def test_a_refused_output_is_asked_for_again_without_repeating_a_greedy_draw():
    chat, seen = replies("   ", "4")
    completion, records = asyncio.run(complete(ModelClient(chat, name="fake"), Sampling(temperature=0, seed=7)))
    assert completion.text == "4"
    assert [r.error for r in records] == ["empty output", None]  # both attempts are lineage
    # Greedy decoding would repeat the refused output: the retry samples, with the next seed.
    assert [(s["temperature"], s["seed"]) for s in seen] == [(0, 7), (0.7, 8)]


def test_outputs_refused_on_every_attempt_raise_with_the_last_reason():
    chat, seen = replies("", " ", "\n")
    with pytest.raises(ModelOutputError, match=r"solver: no usable output after 3 attempts \(last: empty output\)"):
        asyncio.run(complete(ModelClient(chat, name="fake", max_attempts=3)))
    assert len(seen) == 3


class Verdict(BaseModel):
    reason: str
    score: int


def test_structured_output_in_a_code_fence_is_read_where_no_grammar_held_the_model_to_json():
    # transformers serve ignores response_format, and models then wrap the JSON in a Markdown fence
    fenced = '```json\n{\n  "reason": "Each step follows.",\n  "score": 9\n}\n```'
    checked: list[str] = []
    chat, _ = replies(fenced)
    completion, records = asyncio.run(complete(ModelClient(chat, name="fake"), schema=Verdict,
                                               check=lambda text: checked.append(text)))
    assert completion.parsed == Verdict(reason="Each step follows.", score=9)
    assert checked == [completion.text] and completion.text.startswith("{")   # the check reads the JSON
    assert records[0].completion == fenced and records[0].error is None      # lineage keeps what was written


@pytest.mark.parametrize("text", ['Here you go:\n```json\n{"reason": "ok", "score": 9}\n```',
                                  '```json\n{"reason": "ok", "score": 9}\n```\nI hope this helps.',
                                  '```json\n{"reason": "ok", "score": "nine"}\n```'])
def test_json_with_prose_around_its_fence_or_off_its_schema_is_still_refused(text):
    chat, _ = replies(text, text)
    with pytest.raises(ModelOutputError, match="malformed structured output"):
        asyncio.run(complete(ModelClient(chat, name="fake", max_attempts=2), schema=Verdict))
