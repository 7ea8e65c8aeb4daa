"""siammae-bench's DALI rows: the loader itself, its ceiling, its byte reader alone, and the in-graph reader.

The ceiling of a loader row is that very loader (same graph, threads, prefetch, source mode and start
method, same hand-over to torch and output dtype) with its byte source replaced by one that serves the
row's own first batches from memory: the same pairs, without the reads. Every row ends with a device
sync, so a GPU row is timed to the end of its last batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from benchmarks.bench_run import BenchSetup, Measured, epochs, own_jpeg_bytes, timed
from pipeline.config import LoaderConfig
from pipeline.dali_loader import DaliPairLoader, dali_graph_spec, dali_to_torch
from pipeline.dali_source import PairSource
from pipeline.sampling import EpochPlans, PairPlan

CEILING_BYTES = 256 << 20          # the memory source's cache: at most this many JPEG bytes


@dataclass(frozen=True)
class _Info:
    iteration: int


class MemorySource:
    """A PairSource's first batches (`batches` of them from its start), read once up front and served in
    a cycle from memory: the loader's own outputs, without the preads and checks."""

    def __init__(self, source: PairSource, batches: int) -> None:
        self.source = source
        self.cached: list[tuple[Any, ...]] = []
        size = 0
        while len(self.cached) < batches and (not self.cached or size < CEILING_BYTES):
            out = source(_Info(len(self.cached)))
            size += out[0].nbytes + out[1].nbytes
            self.cached.append(out)

    def resolve(self, g: int) -> Any:
        return self.source.resolve(g)

    def __call__(self, info: Any) -> tuple[Any, ...]:
        return self.cached[info.iteration % len(self.cached)]


class CeilingLoader(DaliPairLoader):
    """The DALI loader fed by a MemorySource: what the same pipeline reaches without reading."""

    def __init__(self, cfg: LoaderConfig, data: Any, batches: int) -> None:
        super().__init__(cfg, data)
        self._cache_batches = batches

    def _new_source(self, start_batch: int) -> Any:
        return MemorySource(super()._new_source(start_batch), self._cache_batches)


def _sync(cfg: LoaderConfig) -> None:
    if cfg.device == "cuda":
        torch.cuda.synchronize()


def _loader_row(setup: BenchSetup, loader: DaliPairLoader, cfg: LoaderConfig, note: str = "") -> Measured:
    pairs, _, secs = timed(epochs(loader), lambda b: (len(b), 0), setup.seconds, setup.warmup_batches,
                           sync=lambda: _sync(cfg))
    total = pairs + setup.warmup_batches * cfg.batch_size
    plans = [loader.plans.plan(e) for e in range(total // loader.pairs_per_epoch + 1)]
    p = PairPlan(*(np.concatenate([getattr(q, f) for q in plans])[:total] for f in ("clip", "i", "j", "crop", "flip")))
    loader.close()
    return Measured(pairs / secs, None if note else own_jpeg_bytes(setup.data.index, p), pairs, secs, note)


def run_dali_index(setup: BenchSetup, cfg: LoaderConfig) -> Measured:
    """The DALI loader (pread source): bytes read are exactly the planned frames' byte ranges."""
    return _loader_row(setup, DaliPairLoader(cfg, setup.data), cfg)


def run_ceiling(setup: BenchSetup, cfg: LoaderConfig, batches: int = 64) -> Measured:
    """The same loader as the row it bounds, its first `batches` batches served from memory."""
    return _loader_row(setup, CeilingLoader(cfg, setup.data, batches), cfg, note="from memory")


def run_source(setup: BenchSetup, cfg: LoaderConfig) -> Measured:
    """The byte reader alone, as DALI runs it: the loader's PairSource in DALI's parallel external source
    (`py_num_workers` processes, its own prefetch), in a pipeline that only hands the bytes over."""
    from nvidia.dali import fn, pipeline_def

    plans = EpochPlans(setup.data.index, cfg.sampling, cfg.plan_key, cfg.batch_size, cfg.batches_per_step)
    source = PairSource(setup.data, plans)
    dec = cfg.decoder

    @pipeline_def(enable_conditionals=False)
    def _pipe():
        return tuple(fn.external_source(source, num_outputs=3, batch=True, batch_info=True, parallel=True,
                                        prefetch_queue_depth=dec.source_queue_depth,
                                        bytes_per_sample_hint=64 << 10))

    pipe = _pipe(batch_size=cfg.batch_size, num_threads=dec.num_threads, device_id=None, seed=cfg.seed,
                 prefetch_queue_depth=dec.prefetch_queue_depth, exec_dynamic=True,
                 py_num_workers=dec.py_num_workers, py_start_method=cfg.source_start)
    pipe.build()

    def batches() -> Iterator[Any]:
        while True:
            yield pipe.run()

    pairs, _, secs = timed(batches(), lambda _: (cfg.batch_size, 0), setup.seconds, setup.warmup_batches)
    total = pairs + setup.warmup_batches * cfg.batch_size
    p = plans.plan(0).take(np.arange(total) % plans.pairs_per_epoch)
    return Measured(pairs / secs, own_jpeg_bytes(setup.data.index, p), pairs, secs,
                    note=f"no decode, {dec.py_num_workers} worker(s)")


def run_dali_reader(setup: BenchSetup, cfg: LoaderConfig) -> Measured:
    """DALI's fn.readers.webdataset (the benchmark's own graph): every pair copies its clip's whole .frames
    and .offsets."""
    from benchmarks.reader_graph import build_reader_pipeline
    from pipeline.batch import FrameFinisher
    from pipeline.shard_format import index_path_for

    ix = setup.data.index
    clips = np.arange(len(ix))
    n = ix.n_frames.astype(np.int64)
    first, _ = ix.frame_ranges(clips, np.zeros(len(ix), np.int64))
    last, last_len = ix.frame_ranges(clips, n - 1)
    clip_bytes = float((last + last_len - first + 4 * (n + 1)).mean())
    spec = dali_graph_spec(cfg, (int(ix.clips.height.max()), int(ix.clips.width.max())))
    device_id = torch.cuda.current_device() if cfg.device == "cuda" else None
    pipe = build_reader_pipeline(list(ix.tars), [index_path_for(t) for t in ix.tars], spec, cfg.batch_size,
                                 seed=cfg.seed, device_id=device_id)
    finish = FrameFinisher(cfg.device, cfg.dtype, cfg.normalize_in_torch)

    def batches() -> Iterator[Any]:
        while True:
            f1, f2 = pipe.run()
            yield finish(dali_to_torch(f1)), finish(dali_to_torch(f2))

    pairs, _, secs = timed(batches(), lambda _: (cfg.batch_size, 0), setup.seconds, setup.warmup_batches,
                           sync=lambda: _sync(cfg))
    return Measured(pairs / secs, clip_bytes, pairs, secs)


def gpu_config(cfg: LoaderConfig) -> LoaderConfig:
    """The GPU rows' settings: mixed decode, float32 out (what siammae-train takes), parallel source."""
    return replace(cfg, kind="dali", device="cuda", dtype="float32")


def run_decode_only(setup: BenchSetup, cfg: LoaderConfig, n_pairs: int = 256) -> Measured:
    """For reference: full-frame decode only (no crop, resize, flip or normalize) of JPEG pairs held in
    memory, same threads; not a bound on any row."""
    from pipeline.dali_graph import build_pipeline
    from pipeline.dali_source import padded_rows, pair_meta

    ix = setup.data.index
    plan = PairPlan(*(a[:n_pairs] for a in _first_pairs(setup, n_pairs)))
    rows, lengths = padded_rows(setup.data.reader.read_bytes(np.concatenate([plan.clip, plan.clip]),
                                                             np.concatenate([plan.i, plan.j])))
    b, meta, n = cfg.batch_size, pair_meta(plan, lengths), len(plan)

    def source(info: Any) -> tuple[Any, ...]:
        sel = (np.arange(b) + info.iteration * b) % n
        return rows[sel], rows[n + sel], meta[sel]

    spec = replace(dali_graph_spec(cfg, (int(ix.clips.height.max()), int(ix.clips.width.max()))), decode_only=True)
    pipe = build_pipeline(source, spec, b, parallel=False, seed=cfg.seed, device_id=None)

    def batches() -> Iterator[Any]:
        while True:
            yield pipe.run()

    pairs, _, secs = timed(batches(), lambda _: (b, 0), setup.seconds, setup.warmup_batches)
    return Measured(pairs / secs, None, pairs, secs, note="decode only")


def _first_pairs(setup: BenchSetup, n_pairs: int) -> tuple[np.ndarray, ...]:
    from benchmarks.bench_run import bench_plan

    plan = bench_plan(setup, epochs_=max(1, n_pairs // max(len(setup.data), 1) + 1))
    return plan.clip, plan.i, plan.j, plan.crop, plan.flip
