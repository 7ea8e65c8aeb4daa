"""Worker processes that die with their parent: `kill -9` of make_shards leaves no workers or ffmpeg behind.

Linux delivers a chosen signal to a process when the thread that created it exits
(`prctl(PR_SET_PDEATHSIG)`); pool workers ask for SIGKILL. A worker's ffmpeg child then exits at its
next write, which fails (EPIPE) once the worker's end of the pipe is closed. Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (call in the child)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def init_worker(parent_pid: int) -> None:
    """Pool-worker initializer: die with the parent, and exit at once if it is already gone."""
    die_with_parent()
    try:
        os.kill(parent_pid, 0)         # the parent died before the line above took effect
    except ProcessLookupError:
        os._exit(1)
