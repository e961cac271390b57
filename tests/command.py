"""The `synthgraph` console script run as a user runs it: a subprocess beside this interpreter (model tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def synthgraph(*args: str, cwd: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("synthgraph")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})
