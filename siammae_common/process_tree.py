"""Worker processes that die with the process that started them, however it dies (`kill -9` too): no
orphan keeps running, holds memory or keeps shard files open after make_shards or siammae-train is gone.

Linux delivers a chosen signal to a process when the thread that created it exits
(`prctl(PR_SET_PDEATHSIG)`); workers ask for SIGKILL, then check that their parent is still the one
that started them (it may have died before the request took effect). Every way siammae starts workers
uses it, each at the earliest point that runs in the new process:

- a `ProcessPoolExecutor`: `init_worker` as its initializer; a spawned PyTorch `DataLoader`:
  `init_spawned_loader_worker` as its worker_init_fn;
- DALI's parallel external source, spawned: `DieWithParentPickler` as its callback pickler (it
  unpickles the source first thing in the worker);
- DALI's parallel external source, forked: `forks_die_with_this_process` (a fork hook; DALI takes no
  callback pickler for fork).

A worker's own children (make_shards' ffmpeg) exit at their next write, which fails (EPIPE) once the
worker's end of the pipe is closed. On other systems all of this is a no-op.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import os
import pickle
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (call in the child); with
    `parent_pid`, exit at once if the parent is already another process (the real one died first)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def init_worker(parent_pid: int, *_: object) -> None:
    """A pool initializer / DataLoader worker_init_fn (which also passes the worker id): die with
    `parent_pid`, the process that started the pool."""
    die_with_parent(parent_pid)


def init_spawned_loader_worker(parent_pid: int, *_: object) -> None:
    """A spawned DataLoader worker's worker_init_fn: die with `parent_pid`, and end as a forked worker
    ends, without the interpreter's teardown.

    A worker told to stop while its queue's feeder thread is still handing a batch over (a loader closed
    mid-epoch) would otherwise be torn down around that thread, which then unwinds through C++ code and
    aborts the worker ("terminate called without an active exception", "killed by signal: Aborted").
    Forked workers never tear down either. The status is always 0: the DataLoader learns of a worker's
    errors through its queue, and of a worker that is gone by its liveness, never by its exit status.
    """
    die_with_parent(parent_pid)
    atexit.register(_exit_without_teardown)


def _exit_without_teardown() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@functools.cache                     # once per process: fork hooks cannot be removed, one is enough
def forks_die_with_this_process() -> None:
    """From now on, every child this process forks (os.fork, multiprocessing's "fork") dies with it."""
    forking: list[int] = []
    os.register_at_fork(before=lambda: forking.append(os.getpid()),
                        after_in_parent=forking.clear,
                        after_in_child=lambda: die_with_parent(forking.pop() if forking else None))


class DieWithParentPickler:
    """A pickler (dumps / loads) whose `loads`, run first thing in a spawned worker, makes the worker
    die with `parent_pid`; the objects themselves are pickled as `pickle` does."""

    def __init__(self, parent_pid: int | None = None) -> None:
        self.parent_pid = os.getpid() if parent_pid is None else parent_pid

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> Any:
        die_with_parent(self.parent_pid)
        return pickle.loads(data)
