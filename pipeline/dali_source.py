"""The DALI external source of the main loader: for a batch it `pread`s only the two JPEGs of every
planned pair, checks their bytes (`jpeg_check`, and the frames a decoder already failed on), and hands
them, with the pair's crop and flip, to the graph in `dali_graph`.

One Python call per batch; all choices come from `sampling.plan_epoch`, vectorised over the epoch.
Global batch g is batch g % batches_per_epoch of epoch g // batches_per_epoch, where an epoch is cut
to whole training steps (`sampling.epoch_batches`): the batches a trainer would drop are never read.
A source built with `start_batch` s produces batches s, s + 1, ..., so a pipeline can start at any
batch (after a bad frame, on a resume), and it never raises StopIteration: DALI's prefetching runs
across epoch ends.

Three outputs per batch: the f1 JPEGs, the f2 JPEGs (ragged), and one int32 array [B, META_COLUMNS]
per pair: crop anchor (x, y), crop shape (w, h), flip, then (clip, i, j, replaced) for the loader.
A pair that reads a bad frame is replaced by another pair of the plan (`bad_frames.replace_pair`);
`replaced` flags those slots so that the loader can report them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.bad_frames import BadFrame, FrameChecker, Replacement, replace_pair
from pipeline.config import PairSamplingConfig
from pipeline.frame_index import FrameIndex, FrameReader
from pipeline.sampling import PairPlan, batch_slice, epoch_batches, index_plan

META_COLUMNS = 9            # x, y, w, h, flip, clip, i, j, replaced
DEBUG_COLUMNS = slice(5, 9)  # (clip, i, j, replaced) in the meta array


def pair_meta(plan: PairPlan, replaced: np.ndarray | None = None) -> np.ndarray:
    """The meta array of a batch of pairs: [B, META_COLUMNS] int32, see the module docstring."""
    n = len(plan)
    meta = np.empty((n, META_COLUMNS), dtype=np.int32)
    meta[:, 0:2] = plan.crop[:, [1, 0]]             # anchor (x, y)
    meta[:, 2:4] = plan.crop[:, [3, 2]]             # shape (w, h)
    meta[:, 4] = plan.flip
    meta[:, 5], meta[:, 6], meta[:, 7] = plan.clip, plan.i, plan.j
    meta[:, 8] = 0 if replaced is None else replaced
    return meta


class IndexedPairSource:
    """Picklable batch callable (works in DALI's fork and spawn workers)."""

    def __init__(self, index: FrameIndex, sampling: PairSamplingConfig, batch_size: int, seed: int,
                 rank: int, world_size: int, start_batch: int = 0,
                 known_bad: dict[int, str] | None = None, batches_per_step: int = 1) -> None:
        self.index = index
        self.sampling = sampling
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_batch = start_batch
        self.checker = FrameChecker(index, known_bad)
        self.reader = FrameReader(index)
        self._plans: dict[int, PairPlan] = {}
        self.pairs_per_epoch = len(self.plan(0))     # every epoch of a rank has the same length
        self.batches_per_epoch = epoch_batches(self.pairs_per_epoch, batch_size, batches_per_step)

    def plan(self, epoch: int) -> PairPlan:
        """This rank's pairs of `epoch` (the last two epochs are cached)."""
        if epoch not in self._plans:
            self._plans[epoch] = index_plan(self.index, self.sampling, self.seed, epoch, self.rank,
                                            self.world_size)
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

    def __call__(self, info: Any) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        g = self.start_batch + info.iteration
        epoch, slots = self.batch_slots(g)
        plan = self.plan(epoch)
        p = plan.take(slots)
        f1 = self.reader.read_bytes(p.clip, p.i)
        f2 = self.reader.read_bytes(p.clip, p.j)
        replaced = None
        if not self.checker.all_good(p.clip.tolist(), p.i.tolist(), p.j.tolist(), f1, f2):
            _, sources, _ = self.resolve(g)          # rare: find replacements, read again
            replaced = sources != slots
            p = plan.take(sources)
            f1 = self.reader.read_bytes(p.clip, p.i)
            f2 = self.reader.read_bytes(p.clip, p.j)
        as_array = [np.frombuffer(d, dtype=np.uint8) for d in f1], [np.frombuffer(d, dtype=np.uint8) for d in f2]
        return *as_array, pair_meta(p, replaced)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_plans"] = {}
        return state
