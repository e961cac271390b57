"""A real Ray cluster of several nodes as local processes, for the Ray model test and bench/ray_scaleout.py.

`ray start --head` plus one `ray start --address` per further node, each with its share of the CPUs, its own
ports and one temp folder for the cluster (short: Ray's socket paths must fit in 107 bytes). Torn down by killing
exactly the processes of this cluster — those whose command line names its temp folder, and their children —
never with `ray stop`, which would stop every Ray on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

RAY = Path(sys.executable).with_name("ray")
PORTS_PER_NODE = 10
WORKER_PORTS = 40


def _free_port_block(size: int) -> int:
    """The first of `size` consecutive ports that are free now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + size >= 65000:
            continue
        taken = False
        for port in range(base, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return base
    raise RuntimeError("no block of free ports")


@dataclass
class LocalCluster:
    address: str   # the head's HOST:PORT, as `--ray` takes it
    root: Path     # the cluster's temp folder

    @property
    def env(self) -> dict[str, str]:
        """What a driver needs in its environment to join: the cluster's own token."""
        return auth_env(self.root)

    def worker_processes(self, actor_class: str = "SeedWorker") -> list[psutil.Process]:
        """The live actor processes of `actor_class` (their process title is `ray::CLASS` or `ray::CLASS.method`)."""
        found = []
        for process in cluster_processes(self.root):
            try:
                if " ".join(process.cmdline()).startswith(f"ray::{actor_class}") and \
                        process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except psutil.NoSuchProcess:
                continue
        return found


@contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1, *,
                  env: dict[str, str] | None = None) -> Iterator[LocalCluster]:
    """Start the cluster, yield it, stop it (also when the block raised)."""
    root = Path(tempfile.mkdtemp(prefix="sgrc-", dir="/tmp"))
    (root / "auth_token").write_text(secrets.token_hex(32))
    node_env = {**os.environ, **(env or {}), **auth_env(root), "RAY_USAGE_STATS_ENABLED": "0"}
    base = _free_port_block(nodes * (PORTS_PER_NODE + WORKER_PORTS) + 1)
    head = f"127.0.0.1:{base}"
    try:
        for index in range(nodes):
            first = base + 1 + index * (PORTS_PER_NODE + WORKER_PORTS)
            ports = iter(range(first, first + PORTS_PER_NODE))
            args = [str(RAY), "start", "--num-cpus", str(cpus_per_node), "--num-gpus", "0",
                    "--temp-dir", str(root / "ray"), "--object-store-memory", str(100 * 2**20),
                    "--disable-usage-stats",
                    "--node-manager-port", str(next(ports)), "--object-manager-port", str(next(ports)),
                    "--dashboard-agent-listen-port", str(next(ports)),
                    "--dashboard-agent-grpc-port", str(next(ports)),
                    "--runtime-env-agent-port", str(next(ports)), "--metrics-export-port", str(next(ports)),
                    "--min-worker-port", str(first + PORTS_PER_NODE),
                    "--max-worker-port", str(first + PORTS_PER_NODE + WORKER_PORTS - 1)]
            if index == 0:
                args += ["--head", "--port", str(base), "--include-dashboard", "false",
                         "--ray-client-server-port", str(next(ports)), "--dashboard-port", str(next(ports))]
            else:
                args += ["--address", head]
            started = subprocess.run(args, env=node_env, capture_output=True, text=True, timeout=180)
            if started.returncode != 0:
                raise RuntimeError(f"ray start (node {index}) failed:\n{started.stdout}\n{started.stderr}")
        yield LocalCluster(head, root)
    finally:
        stop_cluster(root)
        shutil.rmtree(root, ignore_errors=True)


def auth_env(root: Path) -> dict[str, str]:
    # Ray >= 2.59 turns token authentication on for `ray start --head` whenever ~/.ray/auth_token exists (which a
    # local `ray.init()` writes), but a node joining with `ray start --address` does not send it unless told to.
    # A token of the cluster's own, named explicitly, works either way and leaves ~/.ray alone.
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(root / "auth_token")}


def cluster_processes(root: Path) -> list[psutil.Process]:
    """Every process of the cluster under `root`: its daemons and, below them, its workers and their engines."""
    mine: dict[int, psutil.Process] = {}
    me = psutil.Process()
    spared = {me.pid, *(parent.pid for parent in me.parents())}  # a caller may name the folder in its own command
    for process in psutil.process_iter(["cmdline"]):
        if process.pid not in spared and any(str(root) in part for part in process.info["cmdline"] or []):
            mine[process.pid] = process
            try:
                mine.update((child.pid, child) for child in process.children(recursive=True)
                            if child.pid not in spared)
            except psutil.NoSuchProcess:
                pass
    return list(mine.values())


def stop_cluster(root: Path) -> None:
    processes = cluster_processes(root)
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
