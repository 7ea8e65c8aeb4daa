"""Disk work off the compute thread: a thread pool decodes frames and writes id PNGs while the encoder
and the propagation run (Pillow releases the GIL while it decodes and compresses).

Writes of device tensors copy to pinned host memory without blocking and wait on a CUDA event in the
worker thread, so the compute thread never waits for a PNG.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from evaluation.dataset_io import write_id_png
from siammae_common.console import UserError

T = TypeVar("T")


class PendingFrames:
    """Frames being decoded in the pool; result() stacks them into [T, H, W, C] uint8."""

    def __init__(self, paths: Sequence[Path], futures: list[Future]) -> None:
        self._paths = list(paths)
        self._futures = futures

    def result(self) -> np.ndarray:
        frames = [f.result() for f in self._futures]
        for path, frame in zip(self._paths, frames):
            if frame.shape != frames[0].shape:
                raise UserError(f"{path}: size {frame.shape[1]}x{frame.shape[0]} differs from the video's first "
                                f"frame {self._paths[0]} ({frames[0].shape[1]}x{frames[0].shape[0]})")
        return np.stack(frames)


class IoPool:
    """Decode and write in background threads; at most `max_pending` writes in flight."""

    def __init__(self, workers: int | None = None, max_pending: int = 32) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1),
                                        thread_name_prefix="eval-io")
        self._writes: deque[Future] = deque()
        self._max_pending = max_pending

    def read_frames(self, paths: Sequence[Path], read: Callable[[Path], np.ndarray]) -> PendingFrames:
        """Start decoding every path with `read`; the frames come back in order."""
        return PendingFrames(paths, [self._pool.submit(read, p) for p in paths])

    def submit(self, ids: torch.Tensor, job: Callable[[np.ndarray], T]) -> Future[T]:
        """Run job(ids as a host array) in the pool; a device tensor is copied without blocking this thread."""
        if ids.device.type == "cuda":
            host = torch.empty(ids.shape, dtype=ids.dtype, pin_memory=True)
            host.copy_(ids, non_blocking=True)
            done = torch.cuda.Event()
            done.record()

            def run() -> T:
                done.synchronize()
                return job(host.numpy())
            return self._pool.submit(run)
        return self._pool.submit(job, ids.numpy())

    def write_ids(self, path: Path, ids: torch.Tensor) -> None:
        """Write an id map [H, W] (uint8, any device) as a palette PNG, in the background."""
        while len(self._writes) >= self._max_pending:
            self._writes.popleft().result()
        self._writes.append(self.submit(ids, lambda array: write_id_png(path, array)))

    def drain(self) -> None:
        """Wait for every write; raise the first error one of them met."""
        while self._writes:
            self._writes.popleft().result()

    def __enter__(self) -> IoPool:  # noqa: PYI034 (final class in practice)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.drain()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
