"""The measurements behind siammae-bench: one function per loader, each returning pairs/s and bytes
read per pair on the pairs of the same plan. Warm-up batches are excluded from every figure."""

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
from pipeline.frame_index import FrameIndex, FrameReader
from pipeline.sampling import PairPlan, plan_epoch


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
    index: FrameIndex
    seconds: float                    # measuring time per loader, after warm-up
    warmup_batches: int = 2


def timed(batches: Iterable[Any], measure: Callable[[Any], tuple[int, int]], seconds: float, warmup: int,
          max_pairs: int | None = None) -> tuple[int, int, float]:
    """Consume batches: skip `warmup`, then add up (pairs, bytes) until `seconds` or `max_pairs` pass.

    Each batch is dropped as soon as it is measured, as a training loop would: keeping them alive
    makes every batch land in fresh memory and slows the fast loaders most.
    """
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    pairs, nbytes, start = 0, 0, time.perf_counter()
    for batch in it:
        p, b = measure(batch)
        pairs, nbytes = pairs + p, nbytes + b
        del batch
        if time.perf_counter() - start >= seconds or (max_pairs and pairs >= max_pairs):
            break
    return pairs, nbytes, time.perf_counter() - start


def epochs(loader: Any) -> Iterator[Any]:
    e = 0
    while True:
        loader.set_epoch(e)
        yield from loader
        e += 1


def bench_plan(setup: BenchSetup, epochs_: int = 50) -> PairPlan:
    """Enough pairs for any reference loader: the rank-0 plans of several epochs, concatenated."""
    ix, c = setup.index, setup.cfg
    plans = [plan_epoch(ix.n_frames, ix.height, ix.width, c.sampling, c.seed, e) for e in range(epochs_)]
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

    loader = build_pair_loader(cfg)
    pairs, _, secs = timed(epochs(loader), lambda b: (len(b), 0), setup.seconds, setup.warmup_batches)
    total = pairs + setup.warmup_batches * cfg.batch_size
    result = Measured(pairs / secs, bytes_per_pair(loader, total), pairs, secs)
    loader.close()
    return result


def run_dali_index(setup: BenchSetup, cfg: LoaderConfig) -> Measured:
    """DALI fed by the pread source: bytes read are exactly the planned frames' byte ranges."""
    def nbytes(loader: Any, pairs: int) -> float:
        plans = [loader._source.plan(e) for e in range(pairs // max(len(loader._source.plan(0)), 1) + 1)]
        p = PairPlan(*(np.concatenate([getattr(q, f) for q in plans])[:pairs]
                       for f in ("clip", "i", "j", "crop", "flip")))
        return own_jpeg_bytes(loader.index, p)
    return run_pair_loader(setup, cfg, nbytes)


def run_dali_reader(setup: BenchSetup, cfg: LoaderConfig) -> Measured:
    """DALI's fn.readers.webdataset: every pair copies its clip's whole .frames and .offsets."""
    ix = setup.index
    clip_bytes = (ix.offsets[ix.first_offset + ix.n_frames] + 4 * (ix.n_frames + 1)).mean()
    return run_pair_loader(setup, replace(cfg, source="reader", debug_indices=False),
                           lambda loader, pairs: float(clip_bytes))


def run_wds(setup: BenchSetup, cfg: LoaderConfig) -> Measured:
    """The fallback: its workers count the bytes they read for every batch delivered."""
    return run_pair_loader(setup, replace(cfg, kind="wds"), lambda loader, pairs: loader.bytes_read / pairs)


def run_ceiling(setup: BenchSetup, cfg: LoaderConfig, *, decode_only: bool, n_pairs: int = 256) -> Measured:
    """The same DALI graph fed from JPEG pairs held in memory: what the pipeline could reach."""
    from pipeline.dali_graph import build_pipeline
    from pipeline.dali_loader import dali_graph_spec
    from pipeline.dali_source import pair_meta

    ix = setup.index
    plan = bench_plan(setup, epochs_=max(1, n_pairs // max(len(ix), 1) + 1)).take(slice(0, n_pairs))
    reader = FrameReader(ix)
    f1, f2 = reader.read(plan.clip, plan.i), reader.read(plan.clip, plan.j)
    reader.close()
    B = cfg.batch_size
    meta = pair_meta(plan)

    def source(info: Any) -> tuple[Any, ...]:
        sel = (np.arange(B) + info.iteration * B) % len(plan)
        return [f1[k] for k in sel], [f2[k] for k in sel], meta[sel]

    spec = replace(dali_graph_spec(cfg, (int(ix.height.max()), int(ix.width.max()))), decode_only=decode_only)
    pipe = build_pipeline(source, spec, B, parallel=False, seed=cfg.seed,
                          device_id=0 if cfg.device == "cuda" else None)

    def batches() -> Iterator[Any]:
        while True:
            out = pipe.run()
            if cfg.device == "cuda":
                import torch
                torch.cuda.synchronize()
            yield out

    pairs, _, secs = timed(batches(), lambda _: (B, 0), setup.seconds, setup.warmup_batches)
    pipe = None
    return Measured(pairs / secs, None, pairs, secs, note="decode only" if decode_only else "")


def temp_frame_folders(index: FrameIndex, plan: PairPlan) -> Path:
    from benchmarks.bench_loaders import extract_frame_folders

    root = Path(tempfile.mkdtemp(prefix="siammae-bench-frames-"))
    try:
        extract_frame_folders(index, plan.clip, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root
