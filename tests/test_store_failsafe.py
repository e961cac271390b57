"""The store fails safe: a lock is told from damage, read-only means confined, readers see a live run's data
through its snapshot, and an export never destroys or half-writes anything."""

from __future__ import annotations

import os
import resource
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from synthgraph.graphs.cli import app
from synthgraph.store.db import Store, StoreDamaged, StoreLocked, connect, query, snapshot_path
from synthgraph.store.rows import MessageRow, RunRow, SampleRow, SeedOutcome, SeedRow


def outcome(run_id: str, i: int, *, padding: int = 0) -> SeedOutcome:
    sample = SampleRow(sample_id=f"x{i}", run_id=run_id, seed_id=f"s{i}", group_id=f"g{i}", kind="trace",
                       status="accepted", payload={"padding": secrets.token_hex(padding // 2), "i": i})
    return SeedOutcome(run_id=run_id, seed_id=f"s{i}", status="done", samples=[sample], messages=[
        MessageRow(sample_id=f"x{i}", turn=0, role="user", content=f"question {i}"),
        MessageRow(sample_id=f"x{i}", turn=1, role="assistant", content=f"answer {i}")])


def registered_store(path: Path, seeds: int) -> Store:
    """An open store holding run `r` with `seeds` pending seeds."""
    store = Store(path)
    store.register_run(RunRow(run_id="r", name="t", graph="reasoning", recipe={}),
                       [SeedRow(run_id="r", seed_id=f"s{i}", position=i, payload={}) for i in range(seeds)])
    return store


def make_store(path: Path, seeds: int = 10, *, padding: int = 0) -> Path:
    store = registered_store(path, seeds)
    store.write_outcomes([outcome("r", i, padding=padding) for i in range(seeds)])
    store.close()
    return path


HEADERS, BLOCK = 3 * 4096, 256 * 1024  # DuckDB's file layout: three header pages, then 256 kB blocks


def said(result) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture
def store(tmp_path) -> Path:
    return make_store(tmp_path / "s.duckdb")


def hold_open(path: Path) -> subprocess.Popen:
    """Another process holding the store open for writing, as a run does."""
    code = "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('holding', flush=True); time.sleep(120)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


# ------------------------------------------------------------------------------ a lock is not damage


def test_a_lock_held_by_another_process_is_reported_as_a_lock(store):
    holder = hold_open(store)
    try:
        with pytest.raises(StoreLocked, match=f"open for writing by process {holder.pid}"):
            connect(store, read_only=True)
        result = CliRunner().invoke(app, ["sql", "SELECT 1", "--db", str(store)])
        assert result.exit_code == 2 and "open for writing" in said(result)
        with pytest.raises(StoreLocked, match="one writing process per file"):
            connect(store, read_only=False)
    finally:
        holder.kill()
        holder.wait()


def test_a_damaged_store_is_reported_as_damaged_not_as_locked(tmp_path):
    store = make_store(tmp_path / "s.duckdb", seeds=200, padding=2000)
    data = bytearray(store.read_bytes())
    for block in range(HEADERS, len(data) - 64, BLOCK):  # damage every block after the file's headers
        for offset in range(block + 16, block + 64):
            data[offset] ^= 0xFF
    store.write_bytes(data)
    with pytest.raises(StoreDamaged) as raised:
        query(store, "SELECT sum(length(payload)) FROM samples")
    assert "checksum" in str(raised.value) and "open for writing" not in str(raised.value)
    result = CliRunner().invoke(app, ["sql", "SELECT sum(length(payload)) FROM samples", "--db", str(store)])
    assert result.exit_code == 2 and "damaged" in said(result) and "open for writing" not in said(result)

    (tmp_path / "junk.duckdb").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreDamaged, match="not a valid DuckDB database"):
        connect(tmp_path / "junk.duckdb", read_only=True)


def test_a_reader_sees_this_versions_views_over_a_store_an_older_one_wrote(store):
    con = duckdb.connect(str(store))  # the shape run_stats had before it counted crashed seeds apart
    con.execute("CREATE OR REPLACE VIEW run_stats AS SELECT r.run_id, r.name, r.graph, r.created_at, 0 AS seeds_done, "
                "0 AS samples, 0 AS accepted, 0 AS rejected, 0 AS errors, 0.0 AS yield FROM runs r")
    con.close()
    cli = CliRunner()
    stats = cli.invoke(app, ["stats", "--db", str(store)])
    assert stats.exit_code == 0, stats.output
    views = cli.invoke(app, ["sql", "SELECT accepted, seeds_crashed FROM run_stats", "-f", "csv", "--db", str(store)])
    assert views.exit_code == 0 and views.stdout.split() == ["accepted,seeds_crashed", "10,0"]


# ------------------------------------------------------------------------ read-only means confined


def test_read_only_sql_cannot_touch_files_but_the_views_work(store, tmp_path):
    target = tmp_path / "leak.csv"
    cli = CliRunner()
    copied = cli.invoke(app, ["sql", f"COPY (SELECT * FROM samples) TO '{target}'", "--db", str(store)])
    assert copied.exit_code == 2 and "--write" in said(copied) and not target.exists()
    read = cli.invoke(app, ["sql", "SELECT * FROM read_text('/etc/hostname')", "--db", str(store)])
    assert read.exit_code == 2 and "disabled" in said(read)
    reopened = cli.invoke(app, ["sql", "SET enable_external_access = true", "--db", str(store)])
    assert reopened.exit_code == 2
    views = cli.invoke(app, ["sql", "SELECT accepted FROM run_stats", "-f", "csv", "--db", str(store)])
    assert views.exit_code == 0 and views.stdout.split() == ["accepted", "10"]
    chats = cli.invoke(app, ["sql", "SELECT count(*) AS n FROM chat_samples", "-f", "csv", "--db", str(store)])
    assert chats.stdout.split() == ["n", "10"]

    written = cli.invoke(app, ["sql", f"COPY (SELECT * FROM samples) TO '{target}'", "--write", "--db", str(store)])
    assert written.exit_code == 0, written.output
    assert len(target.read_text().splitlines()) == 11


# --------------------------------------------------------------- reading while a run writes


WRITER = textwrap.dedent("""
    import asyncio, sys, time
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_store_failsafe import outcome
    from synthgraph.store.db import Store, StoreWriter
    from synthgraph.store.rows import RunRow, SeedRow

    async def main():
        store = Store(Path(sys.argv[1]))
        store.register_run(RunRow(run_id="live", name="live", graph="reasoning", recipe={{}}),
                           [SeedRow(run_id="live", seed_id=f"s{{i}}", position=i, payload={{}}) for i in range(20)])
        async with StoreWriter(store, snapshot_every_s=0) as writer:
            for i in range(int(sys.argv[2])):
                await writer.put(outcome("live", i))
            await asyncio.sleep(0.5)  # let the writer drain (and publish) what it has
            print("written", flush=True)
            await asyncio.sleep(120)

    asyncio.run(main())
""")


def test_readers_see_a_running_writer_through_its_snapshot(tmp_path):
    db = tmp_path / "live.duckdb"
    code = WRITER.format(tests=str(Path(__file__).parent))
    writer = subprocess.Popen([sys.executable, "-c", code, str(db), "7"], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "written"
        with pytest.raises(duckdb.IOException, match="lock"):  # publishing snapshots kept the writer's lock
            duckdb.connect(str(db), read_only=True)
        cli = CliRunner()
        deadline = time.monotonic() + 15  # a snapshot follows the last write within a bounded time
        while True:
            result = cli.invoke(app, ["sql", "SELECT status, count(*) AS n FROM seeds GROUP BY 1 ORDER BY 1",
                                      "-f", "csv", "--db", str(db)])
            assert result.exit_code == 0, result.output
            if result.stdout.split() == ["status,n", "done,7", "pending,13"] or time.monotonic() > deadline:
                break
            assert result.stdout.split() == ["status,n", "pending,20"]  # earlier: consistent, just older
            time.sleep(0.2)
        assert result.stdout.split() == ["status,n", "done,7", "pending,13"]
        assert "reading its snapshot" in said(result)
        stats = cli.invoke(app, ["stats", "--db", str(db)])
        assert stats.exit_code == 0 and "live" in stats.stdout
        exported = cli.invoke(app, ["export", "--out", str(tmp_path / "live.jsonl"), "--db", str(db)])
        assert exported.exit_code == 0 and len((tmp_path / "live.jsonl").read_text().splitlines()) == 7
    finally:
        writer.kill()
        writer.wait()


def test_the_snapshot_is_published_at_start_and_removed_when_the_store_closes(tmp_path):
    import asyncio

    from synthgraph.store.db import StoreWriter

    db = tmp_path / "s.duckdb"

    async def write():
        store = Store(db)
        async with StoreWriter(store, snapshot_every_s=3600):
            for _ in range(100):  # published by the writer task as it starts, without holding up the run
                if snapshot_path(db).exists():
                    break
                await asyncio.sleep(0.05)
            assert snapshot_path(db).exists()
        store.close()

    asyncio.run(write())
    assert not snapshot_path(db).exists()


def test_a_failing_snapshot_never_stops_the_writer(tmp_path, monkeypatch):
    import asyncio

    from synthgraph.store.db import StoreWriter

    def no_room(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "publish_snapshot", no_room)
    db = tmp_path / "s.duckdb"

    async def write():
        store = registered_store(db, 3)
        async with StoreWriter(store, snapshot_every_s=0) as writer:
            for i in range(3):
                await writer.put(outcome("r", i))
        store.close()

    asyncio.run(write())
    assert query(db, "SELECT count(*) FROM seeds WHERE status = 'done'")[1] == [(3,)]


# ------------------------------------------------------------------------- the writer's batches


def spied_store(path: Path, seeds: int, batches: list[tuple[int, int]]) -> Store:
    """A registered store whose writes record (seeds in the batch, DuckDB's thread setting while writing)."""
    store = registered_store(path, seeds)
    write = store.write_outcomes

    def spy(outcomes):
        outcomes = list(outcomes)
        batches.append((len(outcomes), store.con.execute("SELECT current_setting('threads')").fetchone()[0]))
        write(outcomes)

    store.write_outcomes = spy
    return store


def test_seeds_finishing_one_by_one_are_written_in_one_batch_on_one_thread(tmp_path):
    import asyncio

    from synthgraph.store.db import StoreWriter

    batches: list[tuple[int, int]] = []
    store = spied_store(tmp_path / "s.duckdb", 10, batches)
    threads_before = store.con.execute("SELECT current_setting('threads')").fetchone()[0]

    async def write():
        async with StoreWriter(store, linger_s=3600) as writer:
            for i in range(10):
                await writer.put(outcome("r", i))
                await asyncio.sleep(0.01)  # the writer is free to take the first seed alone

    asyncio.run(asyncio.wait_for(write(), 60))  # the run's end cuts the linger short
    assert batches == [(10, 1)]
    assert store.con.execute("SELECT current_setting('threads')").fetchone()[0] == threads_before
    store.close()
    assert query(tmp_path / "s.duckdb", "SELECT count(*) FROM seeds WHERE status = 'done'")[1] == [(10,)]


def test_a_full_batch_is_written_without_waiting_out_the_linger(tmp_path):
    import asyncio

    from synthgraph.store.db import StoreWriter

    batches: list[tuple[int, int]] = []
    store = spied_store(tmp_path / "s.duckdb", 8, batches)

    async def write():
        written = asyncio.Event()

        async def on_written(outcomes):
            written.set()

        async with StoreWriter(store, max_batch=4, linger_s=3600, on_written=on_written) as writer:
            for i in range(4):
                await writer.put(outcome("r", i))
            await asyncio.wait_for(written.wait(), 30)
            for i in range(4, 8):
                await writer.put(outcome("r", i))

    asyncio.run(write())
    assert [size for size, _ in batches] == [4, 4]
    store.close()


# --------------------------------------------------------------------------- export fails safe


def export(store: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["export", "--out", str(out), "--db", str(store), *extra])


def test_export_refuses_to_write_over_the_store(store):
    before = store.read_bytes()
    for target in (store, Path(f"{store}.wal"), store.parent / "." / store.name):
        result = export(store, target, "--force")
        assert result.exit_code == 2 and "the store itself" in said(result)
    assert store.read_bytes() == before
    assert query(store, "SELECT count(*) FROM samples")[1] == [(10,)]


def test_export_keeps_an_existing_file_unless_forced(store, tmp_path):
    out = tmp_path / "mine.jsonl"
    out.write_text("precious\n")
    refused = export(store, out)
    assert refused.exit_code == 2 and "--force" in said(refused)
    assert out.read_text() == "precious\n"
    forced = export(store, out, "--force")
    assert forced.exit_code == 0 and len(out.read_text().splitlines()) == 10


def test_export_refuses_a_missing_folder_a_folder_and_an_unwritable_place(store, tmp_path):
    missing = export(store, tmp_path / "nope" / "out.jsonl")
    assert missing.exit_code == 2 and "does not exist" in said(missing) and not (tmp_path / "nope").exists()
    folder = export(store, tmp_path)
    assert folder.exit_code == 2 and "is a folder" in said(folder)
    unwritable = export(store, Path("/proc/synthgraph-export.jsonl"))
    assert unwritable.exit_code == 2 and "cannot write" in said(unwritable)
    assert len(unwritable.output.strip().splitlines()) == 1
    device = export(store, Path("/dev/null"), "--force")
    assert device.exit_code == 2 and "not a regular file" in said(device)


def test_export_onto_a_full_disk_leaves_nothing_half_written(tmp_path):
    store = make_store(tmp_path / "s.duckdb", seeds=50, padding=2000)
    out = tmp_path / "out.jsonl"
    out.write_text("the old export\n")
    exe = Path(sys.executable).with_name("synthgraph")

    def no_room():  # the disk fills after 20 kB: writes fail with an OSError, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    for fmt in ("jsonl", "parquet"):
        result = subprocess.run([str(exe), "export", "--out", str(out), "--db", str(store), "--force",
                                 "--format", fmt], capture_output=True, text=True, preexec_fn=no_room,
                                env={**os.environ, "COLUMNS": "200"})
        assert result.returncode == 2, result.stderr
        assert "cannot write" in result.stderr and "Traceback" not in result.stderr
        assert out.read_text() == "the old export\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "s.duckdb"]


def test_a_duckdb_file_of_the_users_own_is_never_made_a_store(tmp_path):
    mine = tmp_path / "mine.duckdb"
    con = duckdb.connect(str(mine))
    con.execute("CREATE TABLE orders AS SELECT 1 AS id")
    con.close()
    for command in (["dedup", "--db", str(mine)], ["stats", "--db", str(mine)],
                    ["sql", "SELECT 1", "--db", str(mine), "--write"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "is a DuckDB database but not a synthgraph store (no runs table; it holds orders)" in \
            " ".join(result.output.split())
    con = duckdb.connect(str(mine), read_only=True)
    assert [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()] == ["orders"]
    con.close()
    typo = CliRunner().invoke(app, ["sql", "DELETE FROM samples", "--db", str(tmp_path / "typo.duckdb"), "--write"])
    assert typo.exit_code == 2 and "no store at" in typo.output and not (tmp_path / "typo.duckdb").exists()
