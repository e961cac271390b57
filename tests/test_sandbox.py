"""The sandbox's attack suite: each attack is contained, comes back as a result, and leaves the host as it was.

Every test here would fail with its protection removed (no pid namespace, no rlimit, no private /tmp, ...),
and every attack is bounded so that a broken sandbox fails the test instead of hurting the machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import socket
import sys
import time
import uuid
from contextlib import suppress
from pathlib import Path

import pytest

from synthgraph.tools import sandbox
from synthgraph.tools.sandbox import SandboxUnavailable, arun_python, ensure_sandbox, run_python

REPO = Path(__file__).resolve().parents[1]


def host_processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # exited while we looked
                pass
    return found


def test_bubblewrap_is_available_and_used():
    assert ensure_sandbox() == "bubblewrap"
    result = run_python("print(6 * 7)")
    assert (result.returncode, result.stdout, result.isolation) == (0, "42\n", "bubblewrap")
    assert not result.timed_out and result.killed_by is None


# ------------------------------------------------------------------------------------------ runs forever


@pytest.mark.timeout(60)
def test_endless_program_is_killed_with_every_process_it_started():
    marker = f"sandbox-sleeper-{uuid.uuid4().hex}"
    code = f"""
import os, subprocess, sys
# A child that leaves the process group and one that is a plain fork: neither may outlive the run.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{marker}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.execv(sys.executable, [sys.executable, "-c", "while True: pass", "{marker}"])
print("started", flush=True)
while True:
    pass
"""
    result = run_python(code, timeout_s=1.5)
    assert result.stdout == "started\n"
    assert result.timed_out and result.killed_by == "timeout" and result.returncode is None
    assert result.duration_s < 5
    assert host_processes_mentioning(marker) == []


def test_cpu_address_space_file_size_process_and_core_limits_are_set_inside():
    code = """
import resource as r
for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_NOFILE"):
    print(name, *r.getrlimit(getattr(r, name)))
"""
    result = run_python(code, timeout_s=2, memory_mb=256, disk_mb=16, max_processes=32)
    rows = (line.split() for line in result.stdout.splitlines())
    limits = {name: (int(soft), int(hard)) for name, soft, hard in rows}
    assert limits == {
        "RLIMIT_CPU": (3, 4),
        "RLIMIT_AS": (256 << 20, 256 << 20),
        "RLIMIT_FSIZE": (16 << 20, 16 << 20),
        "RLIMIT_NPROC": (32, 32),
        "RLIMIT_CORE": (0, 0),
        "RLIMIT_NOFILE": (256, 256),
    }


def test_hitting_the_cpu_limit_is_reported_as_such():
    # The program lowers its own soft limit so the test need not burn the real one (checked above).
    code = "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1, 2))\nwhile True: pass\n"
    result = run_python(code, timeout_s=8)
    assert not result.timed_out
    assert result.killed_by == "cpu_limit" and result.returncode == -24


# ----------------------------------------------------------------------------------------------- memory


def test_allocating_past_the_memory_limit_fails_inside_the_program():
    code = "blob = bytearray(1 << 30)\nprint('allocated a GiB')\n"
    result = run_python(code, memory_mb=128)
    assert result.returncode == 1 and "MemoryError" in result.stderr
    assert "allocated" not in result.stdout


def test_allocating_within_the_memory_limit_works():
    result = run_python("blob = bytearray(64 << 20)\nprint(len(blob))", memory_mb=256)
    assert result.stdout == f"{64 << 20}\n"


# Six children holding 400 MB each at once: 2.4 GB if memory_mb capped each process alone. A child that
# allocates reports it, then holds its memory for 4 s, so the ones that survive held it together.
SIX_HOLDERS = """
import os, time
children = []
for _ in range(6):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            block = bytearray(400 << 20)
            block[::4096] = b"x" * len(block[::4096])   # touch every page: resident, not just reserved
        except MemoryError:
            os._exit(3)
        time.sleep(4)
        os._exit(0)
    children.append(pid)
survivors = sum(os.waitpid(pid, 0)[1] == 0 for pid in children)
print("survivors", survivors)
"""


def survivors(result) -> int:
    said = re.fullmatch(r"survivors (\d+)\n", result.stdout)
    if said is None:  # the program itself was killed by the run's cap: nobody reported
        assert result.killed_by == "memory_limit", result
        return 0
    return int(said[1])


def test_the_memory_cap_holds_for_all_processes_of_a_run_together():
    result = run_python(SIX_HOLDERS, memory_mb=512, timeout_s=30)
    assert survivors(result) <= 1, f"{survivors(result)} children held 400 MB each at once under memory_mb=512"
    assert result.memory_cap == "run"
    one = run_python("blob = bytearray(300 << 20)\nblob[::4096] = b'x' * len(blob[::4096])\nprint('held')",
                     memory_mb=512)
    assert one.stdout == "held\n" and one.memory_cap == "run"


def test_without_cgroups_memory_is_split_over_a_bounded_process_count(monkeypatch):
    monkeypatch.setattr(sandbox, "_cgroup_parents", lambda: None)
    result = run_python(SIX_HOLDERS, memory_mb=512, timeout_s=30)
    assert result.memory_cap == "split"
    assert survivors(result) * 400 <= 512
    one = run_python("blob = bytearray(200 << 20)\nprint('held')", memory_mb=512)
    assert one.stdout == "held\n"


def test_a_run_leaves_no_cgroup_behind():
    parents = sandbox._cgroup_parents()
    if parents is None:
        pytest.skip("no cgroup this process can make here")
    before = {p.name for p in parents.memory.iterdir() if p.name.startswith("synthgraph-sandbox-")}
    run_python("print(1)")
    after = {p.name for p in parents.memory.iterdir() if p.name.startswith("synthgraph-sandbox-")}
    assert after <= before


# -------------------------------------------------------------------------------------------- processes


FORK_200 = """
import os, time
children = 0
try:
    for _ in range(200):  # bounded: a broken limit makes 200 sleepers, not a machine-wide fork bomb
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        children += 1
except OSError as error:
    print("refused after", children, type(error).__name__)
else:
    print("forked", children)
"""


def test_fork_bomb_is_stopped_by_the_process_limit():
    result = run_python(FORK_200, max_processes=20, timeout_s=10)
    # 20 processes of the run's uid: the program, its children and, in a user namespace, bwrap's init.
    refused = re.fullmatch(r"refused after (\d+) BlockingIOError\n", result.stdout)
    assert refused and 17 <= int(refused[1]) <= 19


def test_program_runs_unprivileged_without_capabilities():
    code = "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\nprint(open('/proc/self/status').read())"
    result = run_python(code)
    uid, gid, groups = result.stdout.splitlines()[0].split(maxsplit=2)
    assert int(uid) != 0 and int(gid) != 0 and groups == "[]"
    status = dict(line.split(":", 1) for line in result.stdout.splitlines()[1:] if ":" in line)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"


def test_concurrent_runs_each_get_their_own_process_budget():
    # With one uid shared between runs, 2 x 40 sleepers would not fit in a limit of 50.
    # The parent lingers so both runs' children are alive at the same time (they die with their run).
    code = FORK_200.replace("range(200)", "range(40)") + "time.sleep(1)\n"

    async def two_at_once():
        return await asyncio.gather(*(arun_python(code, max_processes=50) for _ in range(2)))

    results = asyncio.run(two_at_once())
    assert [r.stdout for r in results] == ["forked 40\n", "forked 40\n"]


# ------------------------------------------------------------------------------------------------- disk


def test_a_file_cannot_grow_past_the_disk_limit():
    # Sparse, so only the file-size limit can stop it: the tmpfs has room for the one page it takes.
    code = "with open('sparse.bin', 'wb') as f:\n    f.seek(12 << 20)\n    f.write(b'x')\n"
    result = run_python(code, disk_mb=8)
    assert result.returncode == 1 and "File too large" in result.stderr


def test_many_files_cannot_fill_more_than_the_private_tmp():
    code = """
for i in range(12):  # 48 MiB: bounded, so a missing cap cannot fill the host's disk either
    with open(f'part{i}.bin', 'wb') as f:
        f.write(b'x' * (4 << 20))
"""
    result = run_python(code, disk_mb=8)
    assert result.returncode == 1 and "No space left on device" in result.stderr


def test_writes_outside_the_private_tmp_fail_and_never_reach_the_host():
    name = f"pwned-{uuid.uuid4().hex}"
    targets = [REPO / name, Path("/root") / name, Path(sys.prefix) / name, Path("/etc") / name, Path("/usr") / name]
    code = f"""
for target in {[str(t) for t in targets]!r}:
    try:
        open(target, "w").write("owned")
        print("WROTE", target)
    except OSError as error:
        print("refused", target, type(error).__name__)
"""
    try:
        result = run_python(code)
        assert "WROTE" not in result.stdout and result.stdout.count("refused") == len(targets)
        assert [t for t in targets if os.path.exists(t)] == []
    finally:
        for target in targets:
            with suppress(FileNotFoundError, PermissionError):
                target.unlink()


def test_each_run_starts_in_an_empty_private_tmp():
    first = run_python("open('left-behind.txt', 'w').write('x')\nimport os\nprint(os.getcwd())")
    second = run_python("import os\nprint(os.path.exists('left-behind.txt'))")
    assert first.stdout == "/tmp\n" and second.stdout == "False\n"


# -------------------------------------------------------------------------------------- syscall filter


def test_nested_namespaces_and_memory_outside_the_rlimits_are_refused():
    # A nested user namespace could mount an uncapped tmpfs; SysV shm and memfds hold memory RLIMIT_AS misses.
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, IPC_PRIVATE, IPC_CREAT = 0x10000000, 0, 0o1000
print("unshare", libc.unshare(CLONE_NEWUSER), os.strerror(ctypes.get_errno()))
print("shmget", libc.shmget(IPC_PRIVATE, 64 << 20, IPC_CREAT | 0o600), os.strerror(ctypes.get_errno()))
try:
    os.memfd_create("hidden")
except OSError as error:
    print("memfd_create", error.strerror)
"""
    result = run_python(code)
    assert result.stdout.splitlines() == [
        "unshare -1 Operation not permitted",
        "shmget -1 Operation not permitted",
        "memfd_create Operation not permitted",
    ]


def test_threads_processes_and_multiprocessing_still_work_under_the_filter():
    code = """
import multiprocessing, subprocess, threading
worker = threading.Thread(target=print, args=("thread",))
worker.start(); worker.join()
print(subprocess.run(["echo", "subprocess"], capture_output=True, text=True).stdout.strip())
with multiprocessing.Pool(2) as pool:
    print(sum(pool.map(abs, [-1, -2, -3])))
"""
    result = run_python(code)
    assert result.stdout == "thread\nsubprocess\n6\n", result.stderr


# ---------------------------------------------------------------------------------------------- network


def test_network_is_a_fresh_namespace_without_the_hosts_loopback():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = f"""
import socket
print(socket.if_nameindex())
for address in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(address, timeout=1).close()
        print("CONNECTED", address)
    except OSError as error:
        print("no connection", type(error).__name__)
"""
        result = run_python(code)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.stdout.splitlines() == [
        "[(1, 'lo')]", "no connection ConnectionRefusedError", "no connection OSError",
    ]


# ---------------------------------------------------------------------------------------------- secrets


def test_no_environment_variable_of_the_caller_reaches_the_program(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    result = run_python("import os\nprint(sorted(os.environ.items()))")
    assert "sk-test-secret" not in result.stdout and "OPENAI_API_KEY" not in result.stdout
    assert "('HOME', '/tmp')" in result.stdout


# ----------------------------------------------------------------------------------------------- crashes


@pytest.mark.parametrize(("code", "returncode", "killed_by"), [
    ("import ctypes\nctypes.string_at(0)", -11, "SIGSEGV"),
    ("import os\nos._exit(3)", 3, None),
    ("raise SystemExit(4)", 4, None),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", -9, "SIGKILL"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", -15, "SIGTERM"),
    ("raise ValueError('boom')", 1, None),
])
def test_a_crashing_program_is_a_result(code, returncode, killed_by):
    result = run_python(code)
    assert (result.returncode, result.killed_by, result.timed_out) == (returncode, killed_by, False)


def test_endless_output_is_capped_and_the_run_still_ends():
    code = "import sys\nwhile True:\n    sys.stdout.buffer.write(b'x' * 65536)\n"
    result = run_python(code, timeout_s=1.5, max_output_bytes=100_000)
    assert result.timed_out and result.stdout_truncated and len(result.stdout) == 100_000
    assert not result.stderr_truncated


def test_large_output_is_truncated_without_losing_the_exit_status():
    code = "import sys\nsys.stdout.write('y' * (20 << 20))\nsys.stderr.write('done')\n"
    result = run_python(code, max_output_bytes=1000)
    assert result.returncode == 0 and result.stdout == "y" * 1000 and result.stdout_truncated
    assert result.stderr == "done" and not result.stderr_truncated


def test_host_memory_is_unaffected_by_output_floods():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_python("import sys\nsys.stdout.write('z' * (200 << 20))", max_output_bytes=1 << 20)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


# ------------------------------------------------------------------------------------- how programs run


def test_files_and_stdin_are_given_to_the_program():
    code = """
import sys
print(open('data/numbers.txt').read().split(), sys.stdin.read().strip())
open('data/numbers.txt', 'a').write('4')
print(open('data/numbers.txt').read())
"""
    result = run_python(code, files={"data/numbers.txt": "1 2 3 ", "notes.txt": b"bytes too"}, stdin="from stdin\n")
    assert result.stdout == "['1', '2', '3'] from stdin\n1 2 3 4\n"


def test_stdin_larger_than_a_pipe_buffer_that_is_never_read_does_not_stall_the_run():
    result = run_python("print('ignored stdin')", stdin="x" * (4 << 20))
    assert result.returncode == 0 and result.stdout == "ignored stdin\n"


def test_python_runs_isolated_and_writes_no_bytecode():
    code = """
import os, sys
sys.path.insert(0, ".")
import helper
print(sys.flags.isolated, sys.flags.dont_write_bytecode, os.path.exists("__pycache__"), helper.VALUE)
"""
    result = run_python(code, files={"helper.py": "VALUE = 7\n"})
    assert result.stdout == "1 1 False 7\n"


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.txt", "main.py", ""])
def test_file_names_must_stay_inside_the_working_directory(name):
    with pytest.raises(ValueError, match="relative path"):
        run_python("pass", files={name: "x"})


def test_bad_limits_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match=r"memory_mb must be >= 64.*\(got 8\)"):
        run_python("pass", memory_mb=8)


# ------------------------------------------------------------------------------------------------ async


def test_concurrent_runs_do_not_block_the_event_loop():
    async def four_runs_and_a_ticker():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        runs = await asyncio.gather(*(arun_python("import time\ntime.sleep(1)\nprint('slept')") for _ in range(4)))
        ticking.cancel()
        return runs, ticks

    started = time.monotonic()
    results, ticks = asyncio.run(four_runs_and_a_ticker())
    assert [r.stdout for r in results] == ["slept\n"] * 4
    assert time.monotonic() - started < 4 and ticks >= 10


@pytest.mark.timeout(60)
def test_cancelling_a_run_kills_its_processes():
    marker = f"sandbox-cancelled-{uuid.uuid4().hex}"
    code = f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{marker}"], start_new_session=True)
print("started", flush=True)
subprocess.run(["sleep", "600"])
"""

    async def start_then_cancel():
        run = asyncio.create_task(arun_python(code, timeout_s=600))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if host_processes_mentioning(marker):
                break
        assert host_processes_mentioning(marker), "the sandboxed child never started"
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(start_then_cancel())
    assert host_processes_mentioning(marker) == []


def test_sync_api_inside_an_event_loop_says_to_await_the_async_one():
    async def misuse():
        run_python("pass")

    with pytest.raises(RuntimeError, match="await arun_python"):
        asyncio.run(misuse())


# ------------------------------------------------------------------------------------ no silent fallback


@pytest.fixture
def no_bubblewrap(monkeypatch):
    monkeypatch.setattr(sandbox, "_bwrap_candidates", lambda: [("missing bwrap", "/nonexistent/bwrap")])
    for probe in (sandbox._working_bubblewrap, sandbox._unisolated_problem):
        probe.cache_clear()
    yield
    for probe in (sandbox._working_bubblewrap, sandbox._unisolated_problem):
        probe.cache_clear()


def test_without_bubblewrap_running_code_fails_closed_and_says_what_to_install(no_bubblewrap):
    with pytest.raises(SandboxUnavailable, match=r"/nonexistent/bwrap.*apt-get install bubblewrap.*allow_unisolated"):
        run_python("print(1)")
    with pytest.raises(SandboxUnavailable):
        ensure_sandbox()


def test_unisolated_mode_keeps_the_limits_a_clean_environment_and_a_throwaway_dir(no_bubblewrap, monkeypatch):
    try:
        ensure_sandbox(allow_unisolated=True)
    except SandboxUnavailable as unavailable:
        # As root a run switches to an unprivileged uid, which cannot start an interpreter kept under /root.
        assert "o+rx" in str(unavailable)
        pytest.skip("unisolated runs cannot start here: the interpreter is not readable by an unprivileged uid")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    code = "import os, resource as r\nprint(os.getcwd(), r.getrlimit(r.RLIMIT_AS)[0], 'OPENAI_API_KEY' in os.environ)"
    result = run_python(code, memory_mb=200, allow_unisolated=True)
    workdir, address_space, leaked = result.stdout.split()
    assert result.isolation == "none"
    assert (int(address_space), leaked) == (200 << 20, "False")
    assert not Path(workdir).exists()  # the temp dir is deleted after the run
