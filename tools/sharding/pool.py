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

from sharding.process_tree import init_worker

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
    """fn over (hashable) jobs in `workers` processes, results in job order, at most `window` in flight.

    `fn` must not raise. When a worker dies, the pool is replaced: jobs it left unfinished are tried once
    more (after the results already finished), and a job unfinished twice yields `lost(job, reason)`
    (an environment failure, not a bad input).
    """
    if workers <= 1:
        yield from map(fn, jobs)
        return
    todo, retried = iter(jobs), set[J]()
    pending: deque[tuple[J, Future]] = deque()
    retry: deque[J] = deque()
    pool: ProcessPoolExecutor | None = None
    try:
        while True:
            pool = pool or _new_pool(workers)
            while len(pending) < window and (job := retry.popleft() if retry else next(todo, None)) is not None:
                pending.append((job, pool.submit(fn, job)))
            if not pending:
                return
            job, future = pending.popleft()
            try:
                yield future.result()
                continue
            except BrokenProcessPool:
                pass
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
            unfinished = [job] + [j for j, f in pending if not (f.done() and f.exception() is None)]
            finished = [f.result() for _, f in pending if f.done() and f.exception() is None]
            pending.clear()
            yield from _unfinished(unfinished, finished, retried, retry, lost)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _unfinished(unfinished: list[J], finished: list[R], retried: set[J], retry: deque[J],
                lost: Callable[[J, str], R]) -> Iterator[R]:
    """Queue jobs a dead pool left for one more try; give up on those already retried."""
    yield from finished
    for job in unfinished:
        if job in retried:
            yield lost(job, LOST_WORKER)
        else:
            retried.add(job)
            retry.append(job)
