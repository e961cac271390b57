"""vLLM's engine processes die with the run that started them, however it ends (SIGKILL included).

`AsyncLLM` runs its EngineCore in a process of its own (multiprocessing, `spawn` on CPU) and the EngineCore
runs its Worker in another. Their only link to the run is a socket and a pipe, so when the run is killed
with SIGKILL they are re-parented to PID 1 and stay alive holding the model (~7.5 GB each for the embedded
model); killed during model load, the EngineCore waits out vLLM's 5-minute handshake timeout first.

`bind_engine_processes` makes every process whose target is vLLM code start through `_die_with_parent`:
the kernel is asked (prctl PR_SET_PDEATHSIG) to SIGKILL it the moment its parent goes away — as early as
the child can ask, before it imports vLLM — and its own vLLM children are bound the same way, so the whole
tree goes. The kernel ties the signal to the *thread*
that started the child: the engine is therefore started from a thread that lives until the engine is shut
down (`VLLMEngine`'s owner thread), never from a pooled thread that may be retired earlier.

This module is imported in every engine process before vLLM runs there: keep it free of heavy imports.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from multiprocessing.process import BaseProcess

_PR_SET_PDEATHSIG = 1
_original_start = BaseProcess.start


def bind_engine_processes() -> None:
    """From now on, vLLM processes started by this process die when their starting thread does."""
    BaseProcess.start = _start_bound


def _start_bound(self: BaseProcess) -> None:
    target = getattr(self, "_target", None)
    if target is not None and _is_vllm(target):
        self._target = functools.partial(_die_with_parent, _DeathSignal(os.getpid()), target)
    _original_start(self)


class _DeathSignal:
    """Arms the child's death signal when it is unpickled (spawn), which happens before the target and its
    arguments are: those import vLLM and torch, many seconds during which a killed run would otherwise
    leave the child orphaned."""

    def __init__(self, parent_pid: int):
        self.parent_pid = parent_pid

    def __reduce__(self):
        return _arm, (self.parent_pid,)


def _is_vllm(target) -> bool:
    module = getattr(target, "__module__", None) or getattr(getattr(target, "__func__", None), "__module__", "")
    return module == "vllm" or module.startswith("vllm.")


def _arm(parent_pid: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed: the engine could outlive its run")
    if os.getppid() != parent_pid:  # the parent died before the request above: nobody will signal us
        os.kill(os.getpid(), signal.SIGKILL)
    # A process group of its own: a terminal's Ctrl-C goes to the run alone, which stops admitting, lets the
    # seeds in flight finish on a still-working engine and shuts it down in order (the engine processes got the
    # SIGINT too and died mid-request with ~100 lines of tracebacks). The death signal above still binds them.
    os.setpgid(0, 0)
    return parent_pid


def _die_with_parent(armed: int | _DeathSignal, target, *args, **kwargs):
    if isinstance(armed, _DeathSignal):  # started by fork: nothing was unpickled
        _arm(armed.parent_pid)
    bind_engine_processes()
    return target(*args, **kwargs)
