"""The measurements behind siammae-bench: one function per loader, each returning pairs/s and bytes
read per pair on the pairs of the same plan (the DALI rows: bench_dali.py). Warm-up batches are
excluded from every figure."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from pipeline.batch import FrameFinisher
from pipeline.config import LoaderConfig
from pipeline.dataset import ShardDataset
from pipeline.frame_index import FrameIndex
from pipeline.sampling import PairPlan, PlanKey, plan_epoch


@dataclass
class Measured:
    pairs_per_s: float
    bytes_per_pair: float | None
    pairs: int
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class BenchSetup:
    cfg: LoaderConfig                 # the loader settings every row shares (batch, workers, threads)
    data: ShardDataset
    seconds: float                    # measuring time per loader, after warm-up
    warmup_batches: int = 2


def timed(batches: Iterable[Any], measure: Callable[[Any], tuple[int, int]], seconds: float, warmup: int,
          max_pairs: int | None = None, sync: Callable[[], None] | None = None) -> tuple[int, int, float]:
    """Consume batches: skip `warmup`, then add up (pairs, bytes) until `seconds` or `max_pairs` pass;
    `sync` (a device sync) runs after the warm-up and after the last batch, inside the timing.

    Each batch is dropped as soon as it is measured, as a training loop would: keeping them alive
    makes every batch land in fresh memory and slows the fast loaders most.
    """
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    if sync is not None:
        sync()
    pairs, nbytes, start = 0, 0, time.perf_counter()
    for batch in it:
        p, b = measure(batch)
        pairs, nbytes = pairs + p, nbytes + b
        del batch
        if time.perf_counter() - start >= seconds or (max_pairs and pairs >= max_pairs):
            break
    if sync is not None:
        sync()
    return pairs, nbytes, time.perf_counter() - start


def epochs(loader: Any) -> Iterator[Any]:
    e = 0
    while True:
        loader.set_epoch(e)
        yield from loader
        e += 1


def bench_plan(setup: BenchSetup, epochs_: int = 50) -> PairPlan:
    """Enough pairs for any reference loader: the rank-0 plans of several epochs, concatenated."""
    clips, c = setup.data.clips, setup.cfg
    plans = [plan_epoch(clips, c.sampling, PlanKey(c.seed, e)) for e in range(epochs_)]
    return PairPlan(*(np.concatenate([getattr(p, f) for p in plans])
                      for f in ("clip", "i", "j", "crop", "flip")))


def own_jpeg_bytes(index: FrameIndex, plan: PairPlan) -> float:
    """Mean JPEG bytes of a pair's two frames: the floor for bytes read per pair."""
    return float((index.frame_bytes(plan.clip, plan.i) + index.frame_bytes(plan.clip, plan.j)).mean())


def run_dataset(setup: BenchSetup, dataset: Any, *, batch_size: int, max_pairs: int | None = None,
                warmup: int | None = None) -> Measured:
    """A reference Dataset in a DataLoader with the same workers; items are (f1, f2, bytes).

    Workers hand over uint8 and the batch is normalised to float32 here, inside the timing: the same
    training-ready output as the DALI rows, produced the cheap way (uint8 crosses the process boundary).
    """
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=setup.cfg.num_workers, shuffle=False)
    w = setup.warmup_batches if warmup is None else warmup
    finish = FrameFinisher("cpu", "float32", normalize=True)       # what the loaders do, constants made once

    def measure(batch: Any) -> tuple[int, int]:
        f1, f2, nbytes = batch
        finish(f1)
        finish(f2)
        return len(f1), int(nbytes.sum())

    pairs, nbytes, secs = timed(loader, measure, setup.seconds, w, max_pairs)
    return Measured(pairs / secs, nbytes / max(pairs, 1), pairs, secs)


def run_pair_loader(setup: BenchSetup, cfg: LoaderConfig, bytes_per_pair: Callable[[Any, int], float]
                    ) -> Measured:
    from pipeline.loader import build_pair_loader

    loader = build_pair_loader(cfg, setup.data)
    pairs, _, secs = timed(epochs(loader), lambda b: (len(b), 0), setup.seconds, setup.warmup_batches)
    total = pairs + setup.warmup_batches * cfg.batch_size
    result = Measured(pairs / secs, bytes_per_pair(loader, total), pairs, secs)
    loader.close()
    return result


def run_wds(setup: BenchSetup, cfg: LoaderConfig) -> Measured:
    """The fallback: its workers count the bytes they read for every batch delivered."""
    return run_pair_loader(setup, replace(cfg, kind="wds"), lambda loader, pairs: loader.bytes_read / pairs)


def temp_frame_folders(index: FrameIndex, plan: PairPlan) -> Path:
    from benchmarks.bench_loaders import extract_frame_folders

    root = Path(tempfile.mkdtemp(prefix="siammae-bench-frames-"))
    try:
        extract_frame_folders(index, plan.clip, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root
