"""The fallback loader for machines without DALI: the DALI loader's pairs, decoded by Pillow in
DataLoader worker processes.

It reads what the DALI loader reads, the same way: the pairs of `sampling.plan_epoch` (the same plan,
epoch cut and rank split), each pair's two JPEGs `pread` through the frame index, so bytes read per
pair are the pair's own JPEG bytes, and each rank reads only the shards of its own share of the plan
(`sampling.rank_clips` gives ranks disjoint runs of shards). Whole batches are made in the workers
(`wds_batches.BatchMaker`); the main process only normalises them.

webdataset's stages carry the batches: a stream of global batch numbers, `split_by_worker` (worker w
makes batches w, w + W, ...; the DataLoader returns them round-robin, i.e. in order) and `map`, in a
`WebLoader` that is opened once per run and runs across epochs (pinned memory on a GPU machine, up to
the host-to-device copy). Its shard stages (`split_by_node`, `shardshuffle`) and sample-level `batched`
do not fit: which pairs a rank trains on, and in which order, comes from the plan, so that both loaders
deliver the same pairs (also in place of damaged ones), every rank gets the same number of batches, and
a resumed run restarts at the exact batch without reading the batches before it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

import webdataset as wds

from pipeline.bad_frames import BadFrameLedger
from pipeline.batch import FrameFinisher, PairBatch
from pipeline.config import LoaderConfig
from pipeline.dali_source import PairSource
from pipeline.dataset import ShardDataset
from pipeline.epoch_position import EpochPosition
from pipeline.frame_index import FrameIndex, ShardError
from pipeline.sampling import EpochPlans
from pipeline.wds_batches import BatchMaker, MadeBatch, WorkerFailure
from siammae_common.process_tree import init_spawned_loader_worker


class BatchNumbers:
    """The first pipeline stage: global batch numbers start, start + 1, ... (never ends)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __call__(self) -> Iterator[int]:
        return itertools.count(self.start)


class WdsPairLoader(EpochPosition):
    """Iterable of PairBatch, one epoch per iteration; see pipeline.loader.build_pair_loader."""

    def __init__(self, cfg: LoaderConfig, data: ShardDataset | None = None) -> None:
        self.cfg = cfg
        self.data = data if data is not None else ShardDataset.open(cfg.shards)
        self.bad_frames = BadFrameLedger(cfg.bad_frame_limit, cfg.bad_frame_log, cfg.rank)
        self.finish = FrameFinisher(cfg.device, cfg.dtype, normalize=cfg.dtype != "uint8")
        self.plans = EpochPlans(self.data.index, cfg.sampling, cfg.plan_key, cfg.batch_size, cfg.batches_per_step)
        self.n_pairs = self.plans.pairs_per_epoch
        self._batches = self.plans.batches_per_epoch
        self._stream: Iterator[Any] | None = None
        self._next_batch = -1                # global batch the open stream delivers next
        self.loader_builds = 0               # DataLoaders opened (once per run unless the position jumps)
        self.bytes_read = 0                  # JPEG bytes the workers read for the batches delivered

    @property
    def index(self) -> FrameIndex:
        return self.data.index

    @property
    def pairs_per_epoch(self) -> int:
        """Pairs of this rank's epoch plan (the last batch wraps to the epoch's start to fill up)."""
        return self.n_pairs

    def _open(self, start: int) -> None:
        """A DataLoader whose first batch is global batch `start` (workers know the known bad frames)."""
        self.close()
        cfg = self.cfg
        known = self.bad_frames.known_codes(self.data.index)
        data = self.data.knowing(known) if known != self.data.decoder_bad else self.data
        maker = BatchMaker(PairSource(data, self.plans), cfg.sampling)
        stages = wds.DataPipeline(BatchNumbers(start), wds.split_by_worker, wds.map(maker))
        # Workers are spawned, not forked from this process: a fork copies whatever state other libraries'
        # thread pools are in (OpenCV's, once this process has resized or dilated with it), and the child
        # then waits forever on a lock no thread of it will release. Spawned, they are this process's own
        # children (a forkserver's would outlive it), and they die with it however it dies.
        loader = wds.WebLoader(stages, batch_size=None, num_workers=cfg.num_workers,
                               pin_memory=cfg.device == "cuda", prefetch_factor=2 if cfg.num_workers else None,
                               multiprocessing_context="spawn" if cfg.num_workers else None,
                               worker_init_fn=partial(init_spawned_loader_worker, os.getpid()) if cfg.num_workers else None)
        self._stream = iter(loader)
        self._next_batch = start
        self.loader_builds += 1

    def __iter__(self) -> Iterator[PairBatch]:
        batches = self._pass_batches()
        start = batches.start
        if self._stream is None or self._next_batch != start:
            self._open(start)
        for g in batches:
            made = next(self._stream)
            if isinstance(made, WorkerFailure):
                self.close()
                raise made.error
            if not isinstance(made, MadeBatch) or made.g != g:
                raise ShardError(f"{self.cfg.shards}: the loader's workers delivered batch "
                                 f"{getattr(made, 'g', made)} where {g} was due")
            self._next_batch = g + 1
            self.bytes_read += made.bytes_read
            if made.replacements:
                self.bad_frames.record(self.epoch, made.replacements, self.n_pairs)
            yield self._batch(made)
        self.epoch += 1

    def _batch(self, made: MadeBatch) -> PairBatch:
        index = None
        if self.cfg.debug_indices:
            plan = self.plans.plan(made.g // self._batches)
            key = self.data.index.key
            index = [(key(int(plan.clip[p])), int(plan.i[p]), int(plan.j[p])) for p in made.sources.tolist()]
        return PairBatch(self.finish(made.f1), self.finish(made.f2), index)

    def close(self) -> None:
        """Stop the DataLoader's workers (a later pass opens a new one)."""
        self._stream = None
        self._next_batch = -1
