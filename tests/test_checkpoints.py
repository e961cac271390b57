"""The batched SQLite checkpointer (graphs/checkpoints.py): LangGraph's rows, committed in batches, read back whole."""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from pathlib import Path
from typing import Annotated, TypedDict

import aiosqlite
from langgraph.graph import END, START, StateGraph

from synthgraph.graphs.checkpoints import BatchedSqliteSaver


class Count(TypedDict):
    steps: Annotated[list[str], operator.add]


def counting_graph(stop_after: str | None = None):
    async def first(state: Count) -> dict:
        return {"steps": ["first"]}

    async def second(state: Count) -> dict:
        if stop_after == "first":
            raise RuntimeError("killed")  # the run dies in the second node, after the first one's checkpoint
        return {"steps": ["second"]}

    g = StateGraph(Count)
    g.add_node(first)
    g.add_node(second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    g.add_edge("second", END)
    return g


def config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


async def with_saver(path: Path, body, **settings):
    async with aiosqlite.connect(str(path)) as conn:
        async with BatchedSqliteSaver(conn, path, **settings) as saver:
            return await body(saver)


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_graph_resumes_from_checkpoints_another_saver_committed(tmp_path):
    path = tmp_path / "c.sqlite"

    async def die_in_second(saver):
        graph = counting_graph(stop_after="first").compile(checkpointer=saver)
        try:
            await graph.ainvoke({"steps": []}, config("t"), durability="sync")
        except RuntimeError:
            pass

    asyncio.run(with_saver(path, die_in_second, flush_every_s=60))  # only leaving the saver commits
    assert rows(path, "checkpoints") > 0

    async def resume(saver):
        assert saver.holds("t") and not saver.holds("other")
        graph = counting_graph().compile(checkpointer=saver)
        return await graph.ainvoke(None, config("t"))

    assert asyncio.run(with_saver(path, resume))["steps"] == ["first", "second"]


def test_reads_see_writes_still_queued(tmp_path):
    path = tmp_path / "c.sqlite"

    async def body(saver):
        graph = counting_graph().compile(checkpointer=saver)
        await graph.ainvoke({"steps": []}, config("t"))
        queued_before_read = len(saver._queued)
        state = await graph.aget_state(config("t"))
        return queued_before_read, state.values["steps"]

    queued, steps = asyncio.run(with_saver(path, body, flush_every_s=60))
    assert queued > 0  # nothing was committed yet when the state was read
    assert steps == ["first", "second"]


def test_a_deleted_thread_leaves_nothing_and_a_fresh_one_is_not_looked_up(tmp_path):
    path = tmp_path / "c.sqlite"

    async def body(saver):
        graph = counting_graph().compile(checkpointer=saver)
        assert not saver.holds("t")
        assert await saver.aget_tuple(config("t")) is None
        await graph.ainvoke({"steps": []}, config("t"))
        assert saver.holds("t")
        await saver.adelete_thread("t")
        await saver.flush()
        return await saver.aget_tuple(config("t"))

    assert asyncio.run(with_saver(path, body, flush_every_s=60)) is None
    assert rows(path, "checkpoints") == 0 and rows(path, "writes") == 0


def test_the_queue_is_committed_in_the_background(tmp_path):
    path = tmp_path / "c.sqlite"

    async def body(saver):
        graph = counting_graph().compile(checkpointer=saver)
        await graph.ainvoke({"steps": []}, config("t"))
        await asyncio.sleep(0.3)
        return rows(path, "checkpoints")

    assert asyncio.run(with_saver(path, body, flush_every_s=0.01)) > 0


# ---- which seeds the runner checkpoints ----------------------------------------------------------------------

def checkpointed_seeds(tmp_path: Path, monkeypatch, reply_delay_s: float) -> tuple[set[str], int]:
    import time

    from fakes import ReasoningScript, ScriptedPool

    from synthgraph.graphs.recipe import load_seeds, parse_recipe
    from synthgraph.graphs.runner import Runner

    threads: set[str] = set()
    put = BatchedSqliteSaver.aput

    async def spy(self, config, *args):
        threads.add(config["configurable"]["thread_id"].split(":")[-1])
        return await put(self, config, *args)

    monkeypatch.setattr(BatchedSqliteSaver, "aput", spy)

    def solver(messages):
        time.sleep(reply_delay_s)
        number = int(messages[-1].content.split()[2])
        return f"{number} times 7 is {7 * number}.\n#### {7 * number}"

    seeds = [{"id": f"gold-{i}", "problem": f"What is {i} times 7?", "answer": str(7 * i)} for i in range(1, 31)]
    recipe = parse_recipe({"name": "unit", "graph": "reasoning", "seeds": {"inline": seeds},
                           "roles": {"solver": {"samples": 2}}, "concurrency": 2})
    runner = Runner(recipe, load_seeds(recipe, base=Path("."), where="test"), store_path=tmp_path / "s.duckdb",
                    pool=ScriptedPool(ReasoningScript(solver=solver)))
    result = asyncio.run(runner.run())
    assert result.tally.seeds_done == 30
    return threads, result.tally.calls


def test_seeds_are_checkpointed_when_model_calls_take_time(tmp_path, monkeypatch):
    threads, _ = checkpointed_seeds(tmp_path, monkeypatch, reply_delay_s=0.03)  # half the calls (the critic's) are instant
    assert len(threads) == 30


def test_seeds_skip_checkpoints_once_model_calls_prove_instant(tmp_path, monkeypatch):
    threads, calls = checkpointed_seeds(tmp_path, monkeypatch, reply_delay_s=0)
    # the first seeds are checkpointed while too few calls have been timed, the rest are not
    assert 0 < len(threads) < 30 and calls > 32
