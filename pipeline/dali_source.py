"""The DALI external source of the main loader: for batch g it `pread`s only the two JPEGs of every
planned pair and hands them, with the pair's crop and flip, to the graph in `dali_graph`.

One Python call per batch; all choices come from `sampling.plan_epoch`, vectorised over the epoch.
The source never raises StopIteration: batch g belongs to epoch base_epoch + g // batches_per_epoch,
so DALI's prefetching runs straight across epoch boundaries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import PairSamplingConfig
from pipeline.frame_index import FrameIndex, FrameReader
from pipeline.sampling import PairPlan, batch_slice, batches_per_epoch, plan_epoch


class IndexedPairSource:
    """Picklable batch callable (works in DALI's fork and spawn workers)."""

    def __init__(self, index: FrameIndex, sampling: PairSamplingConfig, batch_size: int, seed: int,
                 rank: int, world_size: int, base_epoch: int) -> None:
        self.index = index
        self.sampling = sampling
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.base_epoch = base_epoch
        self.reader = FrameReader(index)
        self._plans: dict[int, PairPlan] = {}
        self.pairs_per_epoch = len(self.plan(base_epoch))
        self.batches_per_epoch = batches_per_epoch(self.pairs_per_epoch, batch_size)

    def plan(self, epoch: int) -> PairPlan:
        """This rank's pairs of `epoch` (the last two epochs are cached)."""
        if epoch not in self._plans:
            ix = self.index
            self._plans[epoch] = plan_epoch(ix.n_frames, ix.height, ix.width, self.sampling, self.seed,
                                            epoch, self.rank, self.world_size)
            for old in [e for e in self._plans if e < epoch - 1]:
                del self._plans[old]
        return self._plans[epoch]

    def batch_plan(self, g: int) -> PairPlan:
        """The pairs of global batch number g."""
        epoch, b = divmod(g, self.batches_per_epoch)
        plan = self.plan(self.base_epoch + epoch)
        return plan.take(batch_slice(len(plan), self.batch_size, b))

    def __call__(self, info: Any) -> tuple[Any, ...]:
        p = self.batch_plan(info.iteration)
        f1 = self.reader.read(p.clip, p.i)
        f2 = self.reader.read(p.clip, p.j)
        anchor = np.ascontiguousarray(p.crop[:, [1, 0]], dtype=np.int32)   # (x, y)
        shape = np.ascontiguousarray(p.crop[:, [3, 2]], dtype=np.int32)    # (w, h)
        debug = np.stack([p.clip, p.i, p.j], axis=1)
        return f1, f2, anchor, shape, p.flip.astype(np.int32), debug

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_plans"] = {}
        return state
