"""The DuckDB store: one file per project, one writer that owns the connection, read-only readers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from synthgraph.store.rows import RunRow, SeedOutcome, SeedRow, to_json

DEFAULT_STORE = Path("synthgraph.duckdb")
IN_MEMORY = ":memory:"  # DuckDB's name for a database that lives in the process only


class StoreError(RuntimeError):
    """A store problem the user can act on (missing file, locked file, bad query)."""


class StoreLocked(StoreError):
    """Another process holds the store open for writing."""


class StoreDamaged(StoreError):
    """The file is not a readable DuckDB database (damaged, truncated, not DuckDB at all)."""


def _schema_sql() -> str:
    return resources.files("synthgraph.store").joinpath("schema.sql").read_text()


@functools.cache
def _views() -> list[tuple[str, str]]:
    """(name, body) of each view schema.sql defines: read once, every read-only connection uses them."""
    return re.findall(r"^CREATE OR REPLACE VIEW (\w+) AS\n(.*?);$", _schema_sql(), flags=re.S | re.M)


def _current_views(con: duckdb.DuckDBPyConnection) -> None:
    """A reader sees this synthgraph's views, not the ones stored with the file: a store written by an older
    version keeps its old definitions until something opens it for writing, and a read-only connection cannot
    replace them. Temporary views of the same names shadow them for this connection alone; one whose tables the
    store lacks keeps the stored definition."""
    for name, body in _views():
        with contextlib.suppress(duckdb.Error):
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS\n{body}")


def unknown_run(run_id: str | None, known: Sequence[str], where: str = "this store") -> str | None:
    """Why `run_id` names none of the store's runs (`known`, which it lists), or None when it names one or is None:
    a mistyped run id is refused, not answered with nothing."""
    if run_id is None or run_id in known:
        return None
    shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none yet"
    return f"no run {run_id!r} in {where}; runs: {shown}"


def snapshot_path(path: Path) -> Path:
    """Where a writing run publishes consistent copies of its store for readers (see `Store.publish_snapshot`)."""
    return Path(f"{path}.snapshot")


def checkpoint_path(path: Path) -> Path:
    """Where a run keeps the LangGraph checkpoints of its seeds in flight (graphs/runner.py)."""
    return Path(f"{path}.checkpoints.sqlite")


def is_store_file(store: Path, path: Path) -> bool:
    """Whether `path` is the store or one of the files that live beside it (WAL, snapshot, checkpoints): a
    command writing there would destroy the store."""
    path = Path(path)
    return any(path.resolve() == f.resolve() or (path.exists() and f.exists() and os.path.samefile(path, f))
               for f in (Path(store), Path(f"{store}.wal"), snapshot_path(store), checkpoint_path(store)))


# DuckDB reports a lock, a damaged file and a failed read all as `IOException`; only the text tells them
# apart (a damaged block's message has "block" in it, so a bare "lock" test mistook damage for a lock).
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in .*? \(PID (\d+)\)", re.S)
_DAMAGED = ("Corrupt database file", "checksum", "not a valid DuckDB database file", "Could not read enough bytes",
            "database file with version number", "The database file was created with")


def describe_io_error(path: Path, exc: duckdb.Error, *, read_only: bool = True) -> StoreError:
    """The user's reading of a DuckDB IO error on `path`: locked by a writer, damaged, or another IO failure."""
    message = str(exc)
    if "Could not set lock on file" in message:
        holder = f"process {pid[1]}" if (pid := _LOCK_HOLDER.search(message)) else "another process"
        if not read_only:
            return StoreLocked(f"{path} is open for writing by {holder} (a run in progress?): DuckDB allows one "
                               "writing process per file; wait for it to end, or use another --db")
        return StoreLocked(
            f"{path} is open for writing by {holder} (a run in progress?) and there is no snapshot to read: "
            f"a run publishes one ({snapshot_path(path).name}) as it starts, so retry in a few seconds; "
            "anything else (ingest, sql --write) holds it until it ends")
    if any(marker in message for marker in _DAMAGED):
        return StoreDamaged(
            f"{path} is damaged and cannot be read ({message.removeprefix('IO Error: ')}); synthgraph will not "
            "write into it: restore it from a backup, or start a new store with --db NEW.duckdb")
    return StoreError(f"cannot open {path}: {message}")


def connect(path: Path, *, read_only: bool, external_access: bool = True,
            notice: Callable[[str], None] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the store. A reader that finds it locked by a writing run reads the run's latest snapshot instead
    (and says so through `notice`). `external_access=False` confines a connection to the store: no reading
    or writing other files, no extensions, no changing that back."""
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"no store at {path}: run a recipe first (synthgraph run RECIPE) or pass --db PATH")
    config = {} if external_access else {"enable_external_access": False, "lock_configuration": True}
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:
        error = describe_io_error(path, exc, read_only=read_only)
        snapshot = snapshot_path(path)
        if not (read_only and isinstance(error, StoreLocked) and snapshot.exists()):
            raise error from exc
        try:
            con = duckdb.connect(str(snapshot), read_only=True, config=config)
        except duckdb.Error as snapshot_exc:  # replaced between the check and the open: the next one is fine
            raise describe_io_error(snapshot, snapshot_exc) from snapshot_exc
        if notice is not None:
            taken = datetime.fromtimestamp(snapshot.stat().st_mtime)
            notice(f"{path} is being written by a run; reading its snapshot of {taken:%H:%M:%S} "
                   f"({time.time() - snapshot.stat().st_mtime:.0f} s old)")
        _current_views(con)
        return con
    tables = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables "
                                              "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'").fetchall()}
    if tables and "runs" not in tables:  # a database of the user's own: never add synthgraph's tables to it
        con.close()
        raise StoreError(f"{path} is a DuckDB database but not a synthgraph store (no runs table; it holds "
                         f"{', '.join(sorted(tables)[:5])}): pass --db with a store, or a new file to start one")
    if read_only:
        _current_views(con)
    else:
        try:
            con.execute(_schema_sql())
        except duckdb.Error as exc:
            con.close()
            raise describe_io_error(path, exc) from exc
    return con


class Store:
    """The read-write side. Only one object of this class should hold a given file at a time."""

    def __init__(self, path: Path = DEFAULT_STORE):
        self.path = Path(path)
        self.con = connect(self.path, read_only=False)
        self.is_copy = False

    def rows(self, queries: Mapping[str, str]) -> dict[str, pa.Table]:
        """table -> the Arrow rows its SELECT gives: what `holding` takes to make a copy of them elsewhere."""
        return {table: self.con.execute(query).fetch_arrow_table() for table, query in queries.items()}

    @classmethod
    def holding(cls, rows: Mapping[str, Any]) -> Store:
        """A store in memory holding these rows (table -> Arrow table, columns by name: `Store.rows`) and nothing
        else: a Ray worker's copy of what its family reads from the run's store. Nothing is written back."""
        store = cls(Path(IN_MEMORY))
        store.is_copy = True
        for table, batch in rows.items():
            store.con.register("_copied_rows", batch)
            try:
                store.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _copied_rows")
            finally:
                store.con.unregister("_copied_rows")
        return store

    def close(self) -> None:
        self.con.close()
        if str(self.path) != IN_MEMORY:
            # Readers go to the store itself again; a snapshot left behind would only go stale.
            snapshot_path(self.path).unlink(missing_ok=True)

    def publish_snapshot(self) -> bool:
        """Publish a consistent copy of the store at `<store>.snapshot` for readers while this process holds
        the write lock; False where it cannot (no /proc). Called from the writer between transactions: after
        the checkpoint the main file holds everything committed and nothing else is being written, so its
        bytes are a consistent database. They are copied through DuckDB's own descriptor: opening and closing
        the file again would drop this process's lock on it (POSIX locks belong to the process and go with
        the first close of any descriptor of the file), letting a second writer in. The copy goes to a
        temporary file that replaces the old snapshot in one rename, so a reader opens the previous snapshot
        or this one, never half of one."""
        source = self._own_descriptor()
        if source is None:
            return False
        self.con.execute("CHECKPOINT")
        target = snapshot_path(self.path)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as copy:
                _copy_at_offsets(source, copy.fileno(), os.fstat(source).st_size)
                os.fsync(copy.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return True

    def _own_descriptor(self) -> int | None:
        """The descriptor DuckDB holds the store's file open with, found through /proc/self/fd."""
        wanted = self.path.resolve()
        with contextlib.suppress(OSError):
            for fd in os.listdir("/proc/self/fd"):
                with contextlib.suppress(OSError):
                    if Path(os.readlink(f"/proc/self/fd/{fd}")) == wanted:
                        return int(fd)
        return None

    def register_run(self, run: RunRow, seeds: Sequence[SeedRow]) -> None:
        with self.transaction():
            self.con.execute(
                "INSERT INTO runs (run_id, name, graph, recipe, recipe_path) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [run.run_id, run.name, run.graph, to_json(run.recipe), run.recipe_path],
            )
            self._insert("seeds", ["run_id", "seed_id", "position", "payload"],
                         [[s.run_id, s.seed_id, s.position, to_json(s.payload)] for s in seeds])

    def has_run(self, run_id: str) -> bool:
        return self.con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0] > 0

    def earlier_run_of(self, run: RunRow, seed_ids: Sequence[str]) -> tuple[str, int] | None:
        """The latest other run of the same recipe name and graph that finished some of `seed_ids`, and how many:
        an edited recipe or seed list makes a new run, which starts those seeds afresh."""
        with self._batch("current", ["seed_id"], [[seed_id] for seed_id in seed_ids]):
            row = self.con.execute(
                "SELECT s.run_id, count(*) FROM seeds s JOIN current USING (seed_id) JOIN runs r USING (run_id) "
                "WHERE r.name = ? AND r.graph = ? AND s.run_id <> ? AND s.status = 'done' "
                "GROUP BY s.run_id ORDER BY max(r.created_at) DESC LIMIT 1", [run.name, run.graph, run.run_id]
            ).fetchone()
        return (row[0], row[1]) if row else None

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
            self._insert("seeds", ["run_id", "seed_id", "position", "payload"],
                         [[o.seed.run_id, o.seed.seed_id, o.seed.position, to_json(o.seed.payload)]
                          for o in outcomes if o.seed is not None])
            with self._batch("written", ["run_id", "seed_id", "status", "error"],
                             [[o.run_id, o.seed_id, o.status, o.error] for o in outcomes]):
                # A seed retried after a crash (--retry-errors) replaces its crash record and the lineage of the
                # crashed attempt: call ids derive from run, seed and call, so the retry's calls would otherwise
                # collide with the old ones and be dropped, leaving lineage that belongs to no sample. Only such
                # seeds are looked for in the big tables, which have no index on the seed: a scan of them for
                # every batch would make a long run's writes grow with the square of its length.
                retried = self.con.execute("SELECT count(*) FROM seeds JOIN written USING (run_id, seed_id) "
                                           "WHERE seeds.status = 'error'").fetchone()[0]
                if retried:
                    self.con.execute("DELETE FROM samples USING written WHERE samples.run_id = written.run_id "
                                     "AND samples.seed_id = written.seed_id AND samples.kind = 'seed_error'")
                    self.con.execute("DELETE FROM agent_calls USING written WHERE agent_calls.run_id = "
                                     "written.run_id AND agent_calls.seed_id = written.seed_id")
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
                self.con.execute("UPDATE seeds SET status = written.status, error = written.error, "
                                 "finished_at = current_timestamp FROM written "
                                 "WHERE seeds.run_id = written.run_id AND seeds.seed_id = written.seed_id")

    def _insert(self, table: str, columns: list[str], rows: list[list[Any]]) -> None:
        if not rows:
            return
        listed = ", ".join(columns)
        with self._batch("batch", columns, rows):
            self.con.execute(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM batch ON CONFLICT DO NOTHING")

    @contextlib.contextmanager
    def _batch(self, name: str, columns: list[str], rows: list[list[Any]]):
        """`rows` as a table named `name` for the statements inside: one columnar insert per table instead of
        DuckDB's executemany, which runs its statement once per row (the writer's whole cost at high rates)."""
        self.con.register(name, pa.Table.from_pydict({c: [row[i] for row in rows] for i, c in enumerate(columns)}))
        try:
            yield
        finally:
            self.con.unregister(name)

    @contextlib.contextmanager
    def transaction(self):
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()


def _copy_at_offsets(source: int, target: int, size: int) -> None:
    """Copy `size` bytes of `source` from offset 0 without moving its file position (DuckDB's descriptor)."""
    offset = 0
    try:
        while offset < size and (copied := os.copy_file_range(source, target, size - offset, offset)):
            offset += copied
    except OSError:  # a file system or kernel without copy_file_range: read and write it here
        os.lseek(target, offset, os.SEEK_SET)
        while offset < size and (chunk := os.pread(source, min(1 << 22, size - offset), offset)):
            os.write(target, chunk)
            offset += len(chunk)


class StoreWriter:
    """The single writer task: graph instances hand it finished seeds; it writes them in batches.

    Batching keeps DuckDB's per-statement cost off the hot path while each seed still lands whole. DuckDB
    charges ~2-4 ms of CPU per statement whatever its size, and a batch takes ten of them: a seed written
    alone costs ~22 ms of CPU; in batches of 64 a reasoning seed (28 rows) costs 0.57 ms, of 256 0.41 ms, of
    1,000 0.31 ms. So a batch is what arrives within `linger_s` of its first seed (sooner once `max_batch` are
    queued or the run ends): a finished seed reaches the store within about a second plus the write, and only
    a run finishing more than `max_batch` seeds a second writes more often. A kill in between loses no model
    work where seeds are checkpointed (a finished seed keeps its checkpoints until it is written, so a rerun
    takes it from them whole); without checkpoints that second's seeds are redone. The writer's statements run
    on one DuckDB thread: its batches are small for DuckDB, and on a small machine a second thread would take a
    core from the event loop or the engine. While it runs it also publishes snapshots of the store for readers
    (`Store.publish_snapshot`): at the start, then after a batch once `snapshot_every_s` have passed, and never
    more often than ten times the last snapshot took, so copying a large store costs the writer at most a tenth
    of its time.
    """

    def __init__(self, store: Store, *, max_batch: int = 1024, linger_s: float = 1.0, snapshot_every_s: float = 15.0,
                 on_written: Callable[[list[SeedOutcome]], Awaitable[None]] | None = None):
        self.store = store
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.snapshot_every_s = snapshot_every_s
        self.on_written = on_written  # after each committed batch: e.g. drop the seeds' resume checkpoints
        self._queue: asyncio.Queue[SeedOutcome | None] = asyncio.Queue()
        self._batch_full = asyncio.Event()  # max_batch seeds queued, or the run is over: stop lingering
        self._closing = False
        self._task: asyncio.Task | None = None
        self._next_snapshot = 0.0
        self._unpublished = False

    async def __aenter__(self) -> StoreWriter:
        self.store.con.execute("SET threads = 1")
        self._task = asyncio.create_task(self._drain())
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._queue.put(None)
        self._closing = True
        self._batch_full.set()
        assert self._task is not None
        await self._task
        self.store.con.execute("RESET threads")

    async def put(self, outcome: SeedOutcome) -> None:
        if self._task is not None and self._task.done():
            # The writer died (disk full, a bug): stop generating data that could not be saved.
            self._task.result()
            raise StoreError("the store writer stopped; nothing more can be saved")
        await self._queue.put(outcome)
        if self._queue.qsize() >= self.max_batch:
            self._batch_full.set()

    async def _drain(self) -> None:
        await asyncio.to_thread(self._snapshot)  # readers see the run from its start (the model loads meanwhile)
        closing = False
        while not closing:
            try:
                # Written but not yet published: wake up when the next snapshot is due even if no seed
                # finishes by then (a long seed must not leave readers looking at old data).
                wait = max(0.0, self._next_snapshot - time.monotonic()) if self._unpublished else None
                batch = [await asyncio.wait_for(self._queue.get(), wait)]
            except TimeoutError:
                await asyncio.to_thread(self._snapshot)
                continue
            self._batch_full.clear()
            if not self._closing and self._queue.qsize() + 1 < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_full.wait(), self.linger_s)
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            closing = None in batch
            outcomes = [o for o in batch if o is not None]
            if outcomes:
                await asyncio.to_thread(self._write, outcomes, closing)
                if self.on_written is not None:
                    await self.on_written(outcomes)

    def _write(self, outcomes: list[SeedOutcome], closing: bool) -> None:
        self.store.write_outcomes(outcomes)
        self._unpublished = True
        if not closing and time.monotonic() >= self._next_snapshot:
            self._snapshot()

    def _snapshot(self) -> None:
        started = time.monotonic()
        try:
            published = self.store.publish_snapshot()
        except (OSError, duckdb.Error):  # e.g. no room for the copy: readers keep the last one, writing goes on
            published = None
        took = time.monotonic() - started
        if published is False:  # no /proc to copy through: readers wait for the run to end
            self._next_snapshot, self._unpublished = float("inf"), False
            return
        self._next_snapshot = time.monotonic() + max(self.snapshot_every_s, 10 * took)
        self._unpublished = published is None  # failed: try again when the next one is due


def query(path: Path, sql: str, params: Sequence[Any] | None = None, *, read_only: bool = True,
          notice: Callable[[str], None] | None = None) -> tuple[list[str], list[tuple]]:
    """Run one statement and return (column names, rows). Read-only (the default) also means confined to the
    store: no `COPY ... TO` a file, no `read_text('/etc/...')`, no extensions; `read_only=False` has it all."""
    con = connect(Path(path), read_only=read_only, external_access=not read_only, notice=notice)
    try:
        try:
            cursor = con.execute(sql, params or [])
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.IOException) and isinstance(damaged := describe_io_error(path, exc), StoreDamaged):
                raise damaged from exc
            if isinstance(exc, duckdb.PermissionException) and read_only:
                raise StoreError(f"query refused: {str(exc).splitlines()[0]} (read-only queries see only the store; "
                                 "pass --write for files and extensions)") from exc
            raise StoreError(f"query failed: {exc}") from exc
        if cursor.description is None:
            return [], []
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        con.close()
