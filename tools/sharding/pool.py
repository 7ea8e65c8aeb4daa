"""A process pool for per-video work: results in job order, a bounded window in flight, workers that die
with make_shards, and a pool that survives a worker killed from outside (e.g. by the out-of-memory killer).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from siammae_common.process_tree import init_worker

J = TypeVar("J")
R = TypeVar("R")

LOST_WORKER = "a decode worker process died (killed from outside, e.g. out of memory)"


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # fork: workers are children of this process (so they die with it) and start without re-importing
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                               initargs=(os.getpid(),))


def ordered_map(fn: Callable[[J], R], jobs: Iterable[J], workers: int, window: int,
                lost: Callable[[J, str], R]) -> Iterator[R]:
    """fn over jobs in `workers` processes, results in job order, at most `window` in flight.

    `fn` must not raise. When a worker dies, the pool is replaced and the jobs it left unfinished run
    again one at a time (after the results that had finished), so the one that kills a worker is found
    alone: it yields `lost(job, reason)`, an environment failure rather than a bad input; the rest go on.
    """
    if workers <= 1:
        yield from map(fn, jobs)
        return
    todo = iter(jobs)
    pending: deque[tuple[J, Future]] = deque()
    suspects: deque[J] = deque()
    pool: ProcessPoolExecutor | None = None
    try:
        while True:
            pool = pool or _new_pool(workers)
            if suspects:
                job = suspects.popleft()
                try:
                    yield pool.submit(fn, job).result()
                except BrokenProcessPool:
                    pool = _shut(pool)
                    yield lost(job, LOST_WORKER)
                continue
            while len(pending) < window and (job := next(todo, None)) is not None:
                pending.append((job, pool.submit(fn, job)))
            if not pending:
                return
            job, future = pending.popleft()
            try:
                yield future.result()
                continue
            except BrokenProcessPool:
                pool = _shut(pool)
            done = [(j, f) for j, f in pending if f.done() and f.exception() is None]
            suspects.extend([job, *(j for j, f in pending if (j, f) not in done)])
            pending.clear()
            yield from (f.result() for _, f in done)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _shut(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=False, cancel_futures=True)
