"""LangGraph's SQLite checkpointer with its writes committed in batches.

`AsyncSqliteSaver` commits every checkpoint and every task's writes on its own, each a few round trips to
aiosqlite's thread. A seed of the reasoning graph makes about fifteen of them, so at hundreds of graph steps per
second they were the largest cost of a run (about 5 ms of CPU per seed, more than the graph itself).
`BatchedSqliteSaver` keeps LangGraph's tables, statements and serializer, and reads through the library's own
code, but queues the rows it is asked to write and commits them together: every `flush_every_s`, or once
`flush_rows` are queued, in one transaction, in one hop to its own writer thread.

Reads see every write: a read commits the queue first. A thread that had no checkpoint when the file was opened
and has not been written since (a seed starting afresh) has nothing to read, and is answered without SQLite.

What a kill can lose on top of LangGraph's "async" durability (the step in progress): the checkpoints of the
last `flush_every_s`. A seed resumes from the step before them; what is in the store loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    SerializerProtocol,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

# The statements of langgraph-checkpoint-sqlite 3.x's `aput`, `aput_writes` and `adelete_thread`, so the rows are
# the ones its readers expect.
_PUT_CHECKPOINT = ("INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
                   "type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)")
_WRITES_COLUMNS = "(thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value)"
_REPLACE_WRITES = f"INSERT OR REPLACE INTO writes {_WRITES_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_KEEP_WRITES = f"INSERT OR IGNORE INTO writes {_WRITES_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_DELETE_CHECKPOINTS = "DELETE FROM checkpoints WHERE thread_id = ?"
_DELETE_WRITES = "DELETE FROM writes WHERE thread_id = ?"


class BatchedSqliteSaver(AsyncSqliteSaver):
    """An `AsyncSqliteSaver` whose writes are queued and committed in batches (see the module's docstring).

    Use it as an async context manager: entering reads which threads the file already holds, leaving commits
    what is queued. `flush()` commits the queue at any time.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path, *, serde: SerializerProtocol | None = None,
                 flush_every_s: float = 0.02, flush_rows: int = 1024):
        super().__init__(conn, serde=serde)
        self.path = path
        self.flush_every_s = flush_every_s
        self.flush_rows = flush_rows
        self._queued: list[tuple[str, tuple]] = []
        self._threads_with_rows: set[str] = set()   # in the file when it was opened, or written since
        self._writer_conn: sqlite3.Connection | None = None
        # One thread owns the writing connection, so batches are committed in the order they were queued.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer")
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task] = set()

    async def __aenter__(self) -> BatchedSqliteSaver:
        await self.setup()
        async with self.conn.execute("SELECT DISTINCT thread_id FROM checkpoints") as cursor:
            self._threads_with_rows = {row[0] for row in await cursor.fetchall()}
        self._writer_conn = await asyncio.get_running_loop().run_in_executor(self._writer, self._connect)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.flush()
        await asyncio.get_running_loop().run_in_executor(self._writer, self._writer_conn.close)
        self._writer.shutdown()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing the OS has
        return conn

    def holds(self, thread_id: str) -> bool:
        """Whether the thread may have checkpoints (in the file when it was opened, or written since)."""
        return thread_id in self._threads_with_rows

    # ---- writes: queued ------------------------------------------------------------------------------

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        configurable = config["configurable"]
        thread_id, checkpoint_ns = str(configurable["thread_id"]), configurable["checkpoint_ns"]
        type_, serialized = self.serde.dumps_typed(checkpoint)
        serialized_metadata = json.dumps(get_checkpoint_metadata(config, metadata),
                                         ensure_ascii=False).encode("utf-8", "ignore")
        self._queue(thread_id, _PUT_CHECKPOINT, (thread_id, checkpoint_ns, checkpoint["id"],
                                                 configurable.get("checkpoint_id"), type_, serialized,
                                                 serialized_metadata))
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                 "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        statement = _REPLACE_WRITES if all(channel in WRITES_IDX_MAP for channel, _ in writes) else _KEEP_WRITES
        for idx, (channel, value) in enumerate(writes):
            self._queue(thread_id, statement, (
                thread_id, str(configurable["checkpoint_ns"]), str(configurable["checkpoint_id"]), task_id,
                task_path, WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value)))

    async def adelete_thread(self, thread_id: str) -> None:
        self._queue(str(thread_id), _DELETE_CHECKPOINTS, (str(thread_id),))
        self._queue(str(thread_id), _DELETE_WRITES, (str(thread_id),))

    def _queue(self, thread_id: str, statement: str, parameters: tuple) -> None:
        self._queued.append((statement, parameters))
        self._threads_with_rows.add(thread_id)
        if len(self._queued) >= self.flush_rows:
            self._flush_soon(0)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_every_s, self._flush_soon, 0)

    def _flush_soon(self, _: float) -> None:
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        """Commit everything queued so far, in the order it was queued."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queued = self._queued, []
        if batch:
            # Under the saver's lock, so a read that started earlier is not overtaken and one that starts later sees it.
            async with self.lock:
                await asyncio.get_running_loop().run_in_executor(self._writer, self._commit, batch)

    def _commit(self, batch: list[tuple[str, tuple]]) -> None:
        conn = self._writer_conn
        conn.execute("BEGIN")
        try:
            for statement, parameters in batch:
                conn.execute(statement, parameters)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ---- reads: after the queue --------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        if not self.holds(str(config["configurable"]["thread_id"])):
            return None
        await self.flush()
        return await super().aget_tuple(config)

    async def alist(self, config: RunnableConfig | None, **kwargs) -> AsyncIterator[CheckpointTuple]:
        await self.flush()
        async for item in super().alist(config, **kwargs):
            yield item

    async def aget_delta_channel_history(self, **kwargs):
        await self.flush()
        return await super().aget_delta_channel_history(**kwargs)
