"""How much memory one sandbox run can hold on the host: a program forking 6 children of 400 MB each under
memory_mb=512. Samples the resident memory of every process running as a sandbox uid while it runs.

    python bench/sandbox_memory.py            # prints the peak held, the survivors and how memory_mb held
    python bench/sandbox_memory.py --split    # as where no cgroup can be made

Resident sizes are summed per process, so pages that forked children share count once per child: the
figure is an upper bound of what the run held.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from synthgraph.tools import sandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_sandbox import SIX_HOLDERS as PROGRAM  # noqa: E402  (the very program the whole-run cap test runs)


def sandbox_rss_mb() -> float:
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[1]) >= sandbox._UID_BASE and "VmRSS" in fields:
            total += int(fields["VmRSS"].split()[0])
    return total / 1024


def main() -> None:
    if "--split" in sys.argv:
        sandbox._cgroup_parents = lambda: None
    peak, done = 0.0, threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sandbox_rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = sandbox.run_python(PROGRAM, memory_mb=512, timeout_s=30)
    done.set()
    sampler.join()
    print(f"memory_mb=512, 6 children x 400 MB: peak held on the host {peak:.0f} MB; "
          f"{result.stdout.strip() or 'no output'}; killed_by={result.killed_by}; memory_cap={getattr(result, 'memory_cap', 'process')}")


if __name__ == "__main__":
    main()
