"""The DALI external source of the main loader: for a batch it `pread`s only the two JPEGs of every
planned pair, checks their bytes (`jpeg_check`, and the frames a decoder already failed on), and hands
them, with the pair's crop and flip, to the graph in `dali_graph`.

One Python call per batch; all choices come from `sampling.plan_epoch`, vectorised over the epoch.
Global batch g is batch g % batches_per_epoch of epoch g // batches_per_epoch. A source built with
`start_batch` s produces batches s, s + 1, ..., so a pipeline can start at any batch (after a bad
frame, on a resume), and it never raises StopIteration: DALI's prefetching runs across epoch ends.

A pair that reads a bad frame is replaced by another pair of the plan (`bad_frames.replace_pair`); the
last column of the sixth output flags the replaced slots so that the loader can report them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.bad_frames import BadFrame, FrameChecker, Replacement, replace_pair
from pipeline.config import PairSamplingConfig
from pipeline.frame_index import FrameIndex, FrameReader
from pipeline.sampling import PairPlan, batch_slice, batches_per_epoch, plan_epoch


class IndexedPairSource:
    """Picklable batch callable (works in DALI's fork and spawn workers)."""

    def __init__(self, index: FrameIndex, sampling: PairSamplingConfig, batch_size: int, seed: int,
                 rank: int, world_size: int, start_batch: int = 0,
                 known_bad: dict[int, str] | None = None) -> None:
        self.index = index
        self.sampling = sampling
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_batch = start_batch
        self.checker = FrameChecker(index, known_bad)
        self.reader = FrameReader(index)
        self._plans: dict[int, PairPlan] = {}
        self.pairs_per_epoch = len(self.plan(0))     # every epoch of a rank has the same length
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

    def batch_slots(self, g: int) -> tuple[int, np.ndarray]:
        """(epoch, plan positions [B]) of global batch g, before any replacement."""
        epoch, b = divmod(g, self.batches_per_epoch)
        return epoch, batch_slice(self.pairs_per_epoch, self.batch_size, b)

    def pair_problems(self, epoch: int, position: int) -> list[BadFrame]:
        """The bad frames of the plan's pair at `position` of `epoch` (reads its two frames)."""
        plan = self.plan(epoch)
        clip, i, j = int(plan.clip[position]), int(plan.i[position]), int(plan.j[position])
        return self.checker.problems(clip, (i, j), self.reader.read_bytes(np.array([clip, clip]), np.array([i, j])))

    def resolve(self, g: int) -> tuple[int, np.ndarray, list[Replacement]]:
        """Global batch g as delivered: (epoch, plan positions of the pairs delivered [B], replacements)."""
        epoch, slots = self.batch_slots(g)
        p = self.plan(epoch).take(slots)
        f1 = self.reader.read_bytes(p.clip, p.i)
        f2 = self.reader.read_bytes(p.clip, p.j)
        sources, replacements = slots.copy(), []
        for k, (clip, i, j) in enumerate(zip(p.clip.tolist(), p.i.tolist(), p.j.tolist())):
            bad = self.checker.problems(clip, (i, j), [f1[k], f2[k]])
            if bad:
                rep = replace_pair(int(slots[k]), bad, self.pairs_per_epoch, self.seed, epoch, self.rank,
                                   lambda q: self.pair_problems(epoch, q))
                sources[k] = rep.source
                replacements.append(rep)
        return epoch, sources, replacements

    def __call__(self, info: Any) -> tuple[Any, ...]:
        g = self.start_batch + info.iteration
        epoch, slots = self.batch_slots(g)
        plan = self.plan(epoch)
        p = plan.take(slots)
        f1 = self.reader.read_bytes(p.clip, p.i)
        f2 = self.reader.read_bytes(p.clip, p.j)
        replaced = np.zeros(len(slots), dtype=np.int64)
        if not self.checker.all_good(p.clip.tolist(), p.i.tolist(), p.j.tolist(), f1, f2):                    # rare: find replacements, read again
            _, sources, _ = self.resolve(g)
            replaced = (sources != slots).astype(np.int64)
            p = plan.take(sources)
            f1 = self.reader.read_bytes(p.clip, p.i)
            f2 = self.reader.read_bytes(p.clip, p.j)
        anchor = np.ascontiguousarray(p.crop[:, [1, 0]], dtype=np.int32)   # (x, y)
        shape = np.ascontiguousarray(p.crop[:, [3, 2]], dtype=np.int32)    # (w, h)
        debug = np.stack([p.clip, p.i, p.j, replaced], axis=1)             # [B, 4]
        as_array = [np.frombuffer(d, dtype=np.uint8) for d in f1], [np.frombuffer(d, dtype=np.uint8) for d in f2]
        return *as_array, anchor, shape, p.flip.astype(np.int32), debug

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_plans"] = {}
        return state
