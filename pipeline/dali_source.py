"""The DALI external source of the main loader: for a batch it `pread`s only the two JPEGs of every
planned pair, checks them (one CRC-32 per frame against the frame table, and the frames known bad), and
hands them, with the pair's crop and flip, to the graph in `dali_graph`.

One Python call per batch; all choices come from the rank's `sampling.EpochPlans`. A source built with
`start_batch` s produces global batches s, s + 1, ..., so a pipeline can start at any batch (after a
decoder failure, on a resume), and it never raises StopIteration: DALI's prefetching runs across epochs.

Three outputs per batch, each one dense array: the f1 JPEGs and the f2 JPEGs as the rows of a uint8
array [B, L] (each padded to the batch's longest frame; the graph cuts row k to its length), and one int32
array [B, META_COLUMNS] per pair: crop anchor (x, y), crop shape (w, h), flip, (clip, i, j, replaced) for
the loader, then the f1 and f2 lengths. DALI's external source costs several microseconds per sample
handed over (and more in its parallel mode), so three arrays per batch instead of 3 B samples is what
lets one reader process feed tens of thousands of pairs a second.
A pair that reads a bad frame is replaced by another pair of the plan (`bad_frames.replace_pair`);
`replaced` flags those slots so that the loader can report them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.bad_frames import BadFrame, Replacement, replace_pair
from pipeline.dataset import ShardDataset
from pipeline.sampling import EpochPlans, PairPlan

META_COLUMNS = 11           # x, y, w, h, flip, clip, i, j, replaced, f1 length, f2 length
DEBUG_COLUMNS = slice(5, 9)  # (clip, i, j, replaced) in the meta array
LENGTH_COLUMNS = (9, 10)     # bytes of f1 and f2 in their padded rows


def pair_meta(plan: PairPlan, lengths: np.ndarray, replaced: np.ndarray | None = None) -> np.ndarray:
    """The meta array of a batch of pairs: [B, META_COLUMNS] int32, see the module docstring.
    lengths: [2B] the JPEG sizes, f1s first."""
    n = len(plan)
    meta = np.empty((n, META_COLUMNS), dtype=np.int32)
    meta[:, 0:2] = plan.crop[:, [1, 0]]             # anchor (x, y)
    meta[:, 2:4] = plan.crop[:, [3, 2]]             # shape (w, h)
    meta[:, 4] = plan.flip
    meta[:, 5], meta[:, 6], meta[:, 7] = plan.clip, plan.i, plan.j
    meta[:, 8] = 0 if replaced is None else replaced
    meta[:, 9], meta[:, 10] = lengths[:n], lengths[n:]
    return meta


def padded_rows(frames: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as the rows of one uint8 array [N, L] (zero-padded) and their lengths [N]."""
    lengths = np.array([len(f) for f in frames], np.int64)
    rows = np.zeros((len(frames), int(lengths.max(initial=0))), np.uint8)
    for k, f in enumerate(frames):
        rows[k, :len(f)] = np.frombuffer(f, np.uint8)
    return rows, lengths


class PairSource:
    """Batch callable for DALI's external source (in the pipeline's thread, or in its fork or spawn
    workers: it pickles as the dataset's folder and the plans' settings, never as an index)."""

    def __init__(self, data: ShardDataset, plans: EpochPlans, start_batch: int = 0) -> None:
        self.data, self.plans, self.start_batch = data, plans, start_batch

    @property
    def pairs_per_epoch(self) -> int:
        return self.plans.pairs_per_epoch

    def read_pairs(self, p: PairPlan) -> tuple[np.ndarray, np.ndarray, list[bytes], np.ndarray]:
        """Both frames of every pair of `p`: (clips [2B], frames [2B], bytes, table CRCs [2B]); f1s first."""
        clips, frames = np.concatenate([p.clip, p.clip]), np.concatenate([p.i, p.j])
        data, crc = self.data.read(clips, frames)
        return clips, frames, data, crc

    def _checked_rows(self, p: PairPlan) -> tuple[np.ndarray, np.ndarray, bool]:
        """Both frames of every pair of `p` as padded rows [2B, L] (f1s first), their lengths [2B], and
        whether every frame is good (its CRC-32 as written, not known bad)."""
        clips, frames = np.concatenate([p.clip, p.clip]), np.concatenate([p.i, p.j])
        rows, lengths, crc = self.data.read_rows(clips, frames)
        views = [rows[k, :n] for k, n in enumerate(lengths.tolist())]
        return rows, lengths, self.data.checker.all_good(clips, frames, views, crc)

    def pair_problems(self, epoch: int, position: int) -> list[BadFrame]:
        """The bad frames of the plan's pair at `position` of `epoch` (reads its two frames)."""
        p = self.plans.plan(epoch).take(np.array([position]))
        clip, i, j = int(p.clip[0]), int(p.i[0]), int(p.j[0])
        data, crc = self.data.read(np.array([clip, clip]), np.array([i, j]))
        return self.data.checker.problems(clip, (i, j), data, crc)

    def resolve(self, g: int) -> tuple[int, np.ndarray, list[Replacement]]:
        """Global batch g as delivered: (epoch, plan positions of the pairs delivered [B], replacements)."""
        epoch, slots = self.plans.batch_slots(g)
        p = self.plans.plan(epoch).take(slots)
        _, _, data, crc = self.read_pairs(p)
        b = len(slots)
        sources, replacements = slots.copy(), []
        for k, (clip, i, j) in enumerate(zip(p.clip.tolist(), p.i.tolist(), p.j.tolist())):
            bad = self.data.checker.problems(clip, (i, j), [data[k], data[b + k]], crc[[k, b + k]])
            if bad:
                key = self.plans.key
                rep = replace_pair(int(slots[k]), bad, self.pairs_per_epoch, key.seed, epoch, key.rank,
                                   lambda q: self.pair_problems(epoch, q))
                sources[k] = rep.source
                replacements.append(rep)
        return epoch, sources, replacements

    def __call__(self, info: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global batch start_batch + info.iteration: (f1 rows [B, L], f2 rows [B, L], meta [B, 11])."""
        g = self.start_batch + info.iteration
        epoch, slots = self.plans.batch_slots(g)
        plan = self.plans.plan(epoch)
        p = plan.take(slots)
        rows, lengths, good = self._checked_rows(p)
        replaced = None
        if not good:
            _, sources, _ = self.resolve(g)          # rare: find replacements, read again
            replaced = sources != slots
            p = plan.take(sources)
            rows, lengths, _ = self._checked_rows(p)
        b = len(slots)
        return rows[:b], rows[b:], pair_meta(p, lengths, replaced)
