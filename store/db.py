"""The DuckDB store: one file per project, one writer that owns the connection, read-only readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from synthgraph.store.rows import RunRow, SeedOutcome, SeedRow, to_json

DEFAULT_STORE = Path("synthgraph.duckdb")


class StoreError(RuntimeError):
    """A store problem the user can act on (missing file, locked file, bad query)."""


def _schema_sql() -> str:
    return resources.files("synthgraph.store").joinpath("schema.sql").read_text()


def connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only and not path.exists():
        raise StoreError(f"no store at {path}: run a recipe first (synthgraph run RECIPE) or pass --db PATH")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreError(
                f"{path} is open for writing by another process (a run in progress?): DuckDB allows one "
                "writing process per file; wait for it to finish or query a copy of the file"
            ) from exc
        raise StoreError(f"cannot open {path}: {exc}") from exc
    if not read_only:
        con.execute(_schema_sql())
    return con


class Store:
    """The read-write side. Only one object of this class should hold a given file at a time."""

    def __init__(self, path: Path = DEFAULT_STORE):
        self.path = Path(path)
        self.con = connect(self.path, read_only=False)

    def close(self) -> None:
        self.con.close()

    def register_run(self, run: RunRow, seeds: Sequence[SeedRow]) -> None:
        with self.transaction():
            self.con.execute(
                "INSERT INTO runs (run_id, name, graph, recipe, recipe_path) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [run.run_id, run.name, run.graph, to_json(run.recipe), run.recipe_path],
            )
            self.con.executemany(
                "INSERT INTO seeds (run_id, seed_id, position, payload) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [[s.run_id, s.seed_id, s.position, to_json(s.payload)] for s in seeds],
            )

    def finished_seeds(self, run_id: str, *, retry_errors: bool = False) -> set[str]:
        """Seeds of the run that a rerun skips: done ones, and crashed ones unless they are to be retried."""
        statuses = ["done"] if retry_errors else ["done", "error"]
        rows = self.con.execute(
            "SELECT seed_id FROM seeds WHERE run_id = ? AND list_contains(?, status)", [run_id, statuses]
        ).fetchall()
        return {r[0] for r in rows}

    def crashed_seeds(self, run_id: str) -> list[tuple[str, str | None]]:
        """(seed id, error) of every seed of the run whose last attempt crashed, in seed order."""
        return self.con.execute(
            "SELECT seed_id, error FROM seeds WHERE run_id = ? AND status = 'error' ORDER BY position, seed_id",
            [run_id]).fetchall()

    def pending_seeds(self, run_id: str) -> int:
        return self.con.execute("SELECT count(*) FROM seeds WHERE run_id = ? AND status = 'pending'",
                                [run_id]).fetchone()[0]

    def accepted_samples(self, run_id: str) -> int:
        return self.con.execute("SELECT count(*) FROM samples WHERE run_id = ? AND status = 'accepted'",
                                [run_id]).fetchone()[0]

    def unfinished_seeds(self, run_id: str, *, retry_errors: bool = False) -> set[str]:
        statuses = ["pending", "error"] if retry_errors else ["pending"]
        rows = self.con.execute(
            "SELECT seed_id FROM seeds WHERE run_id = ? AND list_contains(?, status)", [run_id, statuses]
        ).fetchall()
        return {r[0] for r in rows}

    def write_outcomes(self, outcomes: Iterable[SeedOutcome]) -> None:
        """Write whole seeds in one transaction; rows already present are left alone (resume, retries)."""
        outcomes = list(outcomes)
        if not outcomes:
            return
        samples = [s for o in outcomes for s in o.samples]
        messages = [m for o in outcomes for m in o.messages]
        verdicts = [v for o in outcomes for v in o.verdicts]
        calls = [c for o in outcomes for c in o.agent_calls]
        with self.transaction():
            self._many(
                "INSERT INTO seeds (run_id, seed_id, position, payload) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [[o.seed.run_id, o.seed.seed_id, o.seed.position, to_json(o.seed.payload)]
                 for o in outcomes if o.seed is not None],
            )
            # A seed retried after a crash (--retry-errors) replaces its crash record and the lineage of the crashed
            # attempt: call ids derive from run, seed and call, so the retry's calls would otherwise collide with
            # the old ones and be dropped, leaving lineage that belongs to no sample.
            self._many(
                "DELETE FROM samples WHERE run_id = ? AND seed_id = ? AND kind = 'seed_error'",
                [[o.run_id, o.seed_id] for o in outcomes],
            )
            self._many("DELETE FROM agent_calls WHERE run_id = ? AND seed_id = ?",
                       [[o.run_id, o.seed_id] for o in outcomes])
            self._insert(
                "samples",
                ["sample_id", "run_id", "seed_id", "group_id", "kind", "status", "reason", "score", "payload"],
                [[s.sample_id, s.run_id, s.seed_id, s.group_id, s.kind, s.status, s.reason, s.score,
                  to_json(s.payload)] for s in samples],
            )
            self._insert(
                "messages",
                ["sample_id", "turn", "role", "content", "tool_calls", "tool_call_id", "name"],
                [[m.sample_id, m.turn, m.role, m.content, to_json(m.tool_calls), m.tool_call_id, m.name]
                 for m in messages],
            )
            self._insert(
                "verdicts",
                ["verdict_id", "sample_id", "verifier", "turn", "outcome", "passed", "score", "detail"],
                [[v.verdict_id, v.sample_id, v.verifier, v.turn, v.outcome, v.passed, v.score, v.detail]
                 for v in verdicts],
            )
            self._insert(
                "agent_calls",
                ["call_id", "run_id", "seed_id", "sample_id", "role", "node", "model", "prompt_hash", "prompt",
                 "completion", "prompt_tokens", "completion_tokens", "latency_s", "finish_reason", "sampling",
                 "error", "started_at"],
                [[c.call_id, c.run_id, c.seed_id, c.sample_id, c.role, c.node, c.model, c.prompt_hash,
                  to_json(c.prompt), c.completion, c.prompt_tokens, c.completion_tokens, c.latency_s,
                  c.finish_reason, to_json(c.sampling), c.error, c.started_at] for c in calls],
            )
            self._many(
                "UPDATE seeds SET status = ?, error = ?, finished_at = current_timestamp "
                "WHERE run_id = ? AND seed_id = ?",
                [[o.status, o.error, o.run_id, o.seed_id] for o in outcomes],
            )

    def _insert(self, table: str, columns: list[str], rows: list[list[Any]]) -> None:
        marks = ", ".join("?" for _ in columns)
        self._many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows)

    def _many(self, sql: str, rows: list[list[Any]]) -> None:
        if rows:  # DuckDB refuses executemany with no parameter sets
            self.con.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self):
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()


class StoreWriter:
    """The single writer task: graph instances hand it finished seeds; it writes them in batches.

    Batching keeps DuckDB's per-transaction cost off the hot path while each seed still lands whole.
    """

    def __init__(self, store: Store, *, max_batch: int = 64,
                 on_written: Callable[[list[SeedOutcome]], Awaitable[None]] | None = None):
        self.store = store
        self.max_batch = max_batch
        self.on_written = on_written  # after each committed batch: e.g. drop the seeds' resume checkpoints
        self._queue: asyncio.Queue[SeedOutcome | None] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> StoreWriter:
        self._task = asyncio.create_task(self._drain())
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._queue.put(None)
        assert self._task is not None
        await self._task

    async def put(self, outcome: SeedOutcome) -> None:
        if self._task is not None and self._task.done():
            # The writer died (disk full, a bug): stop generating data that could not be saved.
            self._task.result()
            raise StoreError("the store writer stopped; nothing more can be saved")
        await self._queue.put(outcome)

    async def _drain(self) -> None:
        closing = False
        while not closing:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            closing = None in batch
            outcomes = [o for o in batch if o is not None]
            await asyncio.to_thread(self.store.write_outcomes, outcomes)
            if self.on_written is not None and outcomes:
                await self.on_written(outcomes)


def query(path: Path, sql: str, params: Sequence[Any] | None = None, *, read_only: bool = True
          ) -> tuple[list[str], list[tuple]]:
    """Run one statement (read-only unless asked) and return (column names, rows)."""
    con = connect(Path(path), read_only=read_only)
    try:
        try:
            cursor = con.execute(sql, params or [])
        except duckdb.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc
        if cursor.description is None:
            return [], []
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        con.close()
