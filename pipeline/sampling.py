"""Pair-sampling math shared by every loader: which clips a rank reads in an epoch, which two frames
of each clip form a pair, and the one crop window and flip both frames get.

Everything is vectorised numpy over a whole epoch, keyed only by (seed, epoch, rank) (`PlanKey`), so the
DALI loader, the webdataset fallback and the benchmark's reference loaders draw exactly the same pairs.
`EpochPlans` cuts a rank's epochs into batches, the one place that checks an epoch holds a training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline.config import PairSamplingConfig, PlanKey

__all__ = ["EpochPlans", "PairPlan", "PlanKey", "plan_epoch"]

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 windows before falling back to a centre crop
REPLACEMENT_CANDIDATES = 64  # pairs tried in turn for one that reads a bad frame
CROP_CHUNK = 1 << 14         # crop attempts are tried this many pairs at a time (bounds planning's memory)
# epoch_rng streams: 1 clip order, 2 pairs and crops, 4 replacements, 5 shard order, 6 a rank's clip order


class Clips(Protocol):
    """What planning reads of a clip table ([C] arrays; `shard` None when shards do not matter)."""

    n_frames: np.ndarray
    height: np.ndarray
    width: np.ndarray
    shard: np.ndarray | None


@dataclass(frozen=True)
class PairPlan:
    """The pairs one rank produces in one epoch, in order. All arrays have length n_pairs."""

    clip: np.ndarray   # [N] int64, index into the clip table
    i: np.ndarray      # [N] int64, first frame
    j: np.ndarray      # [N] int64, second frame, j = i + gap
    crop: np.ndarray   # [N, 4] int64, (y, x, h, w) in pixels of the stored frame, shared by both frames
    flip: np.ndarray   # [N] bool, horizontal flip, shared by both frames

    def __len__(self) -> int:
        return len(self.clip)

    def take(self, sel: slice | np.ndarray) -> PairPlan:
        return PairPlan(self.clip[sel], self.i[sel], self.j[sel], self.crop[sel], self.flip[sel])


def epoch_rng(seed: int, epoch: int, rank: int, stream: int = 0) -> np.random.Generator:
    """A generator determined by (seed, epoch, rank, stream) only."""
    return np.random.default_rng([seed, epoch, rank, stream])


def rank_clips(n_clips: int, seed: int, epoch: int, rank: int, world_size: int,
               shard_of: np.ndarray | None = None) -> np.ndarray:
    """Clip indices this rank reads in `epoch`: a shuffled, disjoint share of the clip list, every
    rank getting ceil(n_clips / world_size) clips (equal epoch lengths, as DDP needs; a short share is
    padded by repeating some of its own clips).

    With several ranks and `shard_of` ([C] the shard of each clip), the shares are cut by shard: the
    shards are put in a shuffled order, each rank takes a contiguous run of them (so ranks read
    disjoint sets of shards, sharing at most the shard where two runs meet), and its clips are then
    shuffled among themselves. One rank alone reads every clip in a shuffled order.
    """
    if n_clips <= 0:
        raise ValueError("no clips to sample from")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    # int32 where it fits: the same permutation as of int64 (it depends only on the length), half the memory
    index = np.int32 if n_clips < 2**31 else np.int64
    order = epoch_rng(seed, epoch, 0, stream=1).permutation(np.arange(n_clips, dtype=index))  # same on every rank
    per_rank = math.ceil(n_clips / world_size)
    if world_size == 1 or shard_of is None or n_clips < world_size:
        padded = np.resize(order, per_rank * world_size)                   # wraps around
        return padded[rank * per_rank:(rank + 1) * per_rank].astype(np.int64)
    shard_of = np.asarray(shard_of)
    n_shards = int(shard_of.max()) + 1
    place = epoch_rng(seed, epoch, 0, stream=5).permutation(np.arange(n_shards, dtype=np.int32))  # shard -> place
    by_shard = order[np.argsort(place[shard_of[order]], kind="stable")]    # shard after shard
    bounds = np.arange(world_size + 1) * n_clips // world_size
    mine = by_shard[bounds[rank]:bounds[rank + 1]]
    mine = mine[epoch_rng(seed, epoch, rank, stream=6).permutation(len(mine))]   # mix the rank's shards
    return np.resize(mine, per_rank).astype(np.int64)


def sample_frame_pairs(n_frames: np.ndarray, gap_min: int, gap_max: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frames (i, j = i + gap) for clips with `n_frames` frames each ([N] -> [N], [N]).

    The gap is uniform in [gap_min, gap_max] inclusive, with both bounds clamped to n - 1 for short
    clips; i is then uniform over the starts that keep j inside the clip.
    """
    n = np.asarray(n_frames, dtype=np.int64)
    if (n < 1).any():
        raise ValueError("every clip needs at least one frame")
    hi = np.minimum(gap_max, n - 1)
    lo = np.minimum(gap_min, hi)
    gap = rng.integers(lo, hi + 1)
    i = rng.integers(0, n - gap)                                            # i + gap <= n - 1
    return i, i + gap


def sample_crops(heights: np.ndarray, widths: np.ndarray, scale: tuple[float, float],
                 ratio: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """RandomResizedCrop windows, torchvision's algorithm vectorised: [N] sizes -> [N, 4] (y, x, h, w).
    The attempts are drawn at once and tried CROP_CHUNK rows at a time, so planning a large epoch holds
    16 bytes per attempt, not the several times that the whole computation would."""
    hgt = np.asarray(heights, dtype=np.int64)
    wid = np.asarray(widths, dtype=np.int64)
    n = len(hgt)
    area_u = rng.uniform(scale[0], scale[1], size=(n, CROP_ATTEMPTS))
    ratio_u = rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, CROP_ATTEMPTS))
    w, h, found = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, bool)
    for a in range(0, n, CROP_CHUNK):
        b = min(n, a + CROP_CHUNK)
        target = (hgt[a:b] * wid[a:b])[:, None] * area_u[a:b]
        aspect = np.exp(ratio_u[a:b])
        cw = np.rint(np.sqrt(target * aspect)).astype(np.int64)
        ch = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        ok = (cw > 0) & (ch > 0) & (cw <= wid[a:b, None]) & (ch <= hgt[a:b, None])
        first, rows = ok.argmax(axis=1), np.arange(b - a)
        found[a:b], w[a:b], h[a:b] = ok[rows, first], cw[rows, first], ch[rows, first]
    del area_u, ratio_u
    # Fallback (no attempt fitted): the largest centre crop whose ratio is inside the range.
    in_ratio = wid / hgt
    fw = np.where(in_ratio < ratio[0], wid, np.where(in_ratio > ratio[1], np.rint(hgt * ratio[1]), wid))
    fh = np.where(in_ratio < ratio[0], np.rint(wid / ratio[0]), hgt)
    w = np.where(found, w, fw).astype(np.int64)
    h = np.where(found, h, fh).astype(np.int64)
    u = rng.random((n, 2))
    y = np.where(found, np.floor(u[:, 0] * (hgt - h + 1)), (hgt - h) // 2).astype(np.int64)
    x = np.where(found, np.floor(u[:, 1] * (wid - w + 1)), (wid - w) // 2).astype(np.int64)
    return np.stack([y, x, h, w], axis=1)


def plan_epoch(clips: Clips, cfg: PairSamplingConfig, key: PlanKey) -> PairPlan:
    """All pairs of one rank's epoch: its clips (`rank_clips`, split by shard when `clips.shard` is given)
    in shuffled order, each repeated K = pairs_per_clip times in a row (repeated sampling: the K pairs of a
    clip are consecutive)."""
    share = rank_clips(len(clips.n_frames), key.seed, key.epoch, key.rank, key.world_size, clips.shard)
    picked = np.repeat(share, cfg.pairs_per_clip)
    rng = epoch_rng(key.seed, key.epoch, key.rank, stream=2)
    i, j = sample_frame_pairs(np.asarray(clips.n_frames)[picked], cfg.gap_min, cfg.gap_max, rng)
    crop = sample_crops(np.asarray(clips.height)[picked], np.asarray(clips.width)[picked], cfg.crop_scale,
                        cfg.crop_ratio, rng)
    flip = rng.random(len(picked)) < cfg.flip_probability
    return PairPlan(picked, i, j, crop, flip)


def batch_slice(n_pairs: int, batch_size: int, batch: int) -> np.ndarray:
    """Plan positions of batch `batch`; the last batch is filled by wrapping to the epoch's start."""
    return (np.arange(batch * batch_size, (batch + 1) * batch_size) % n_pairs).astype(np.int64)


def batches_per_epoch(n_pairs: int, batch_size: int) -> int:
    return math.ceil(n_pairs / batch_size)


def replacement_candidates(n_pairs: int, seed: int, epoch: int, rank: int, slot: int) -> np.ndarray:
    """Plan positions to try, in order, in place of the pair at `slot` when it reads a bad frame.

    Fixed by (seed, epoch, rank, slot) alone, so every loader, and a resumed run, picks the same
    replacement: the first candidate whose frames are all good. [<= REPLACEMENT_CANDIDATES] int64, never
    `slot` itself.
    """
    if n_pairs < 2:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, rank, 4, slot])
    steps = rng.choice(n_pairs - 1, size=min(n_pairs - 1, REPLACEMENT_CANDIDATES), replace=False) + 1
    return ((slot + steps) % n_pairs).astype(np.int64)


def pairs_per_rank(n_clips: int, world_size: int, pairs_per_clip: int) -> int:
    """Pairs in one rank's epoch: every rank reads ceil(n_clips / world_size) clips (see `rank_clips`)."""
    return math.ceil(n_clips / world_size) * pairs_per_clip


class EpochTooShort(ValueError):
    """One training step needs more pairs than a rank's epoch holds."""


def epoch_batches(n_pairs: int, batch_size: int, batches_per_step: int = 1) -> int:
    """Batches a loader delivers per epoch: enough to cover the plan (the last one wraps to the epoch's
    start), cut to a whole number of `batches_per_step`. The one check that an epoch holds a step:
    raises EpochTooShort when a step's batch_size x batches_per_step pairs exceed the epoch's n_pairs."""
    if batch_size * batches_per_step > n_pairs:
        raise EpochTooShort(f"larger than one epoch of pairs ({n_pairs} per process; one step takes "
                            f"{batch_size} x {batches_per_step} = {batch_size * batches_per_step})")
    full = batches_per_epoch(n_pairs, batch_size)
    return full - full % batches_per_step


class EpochPlans:
    """One rank's epochs cut into batches: global batch g is batch g % batches_per_epoch of epoch
    g // batches_per_epoch. `index` is anything with a `clips` table (a FrameIndex, which pickles as its
    folder). The plans of the last two epochs are kept; pickles without them."""

    def __init__(self, index: Any, sampling: PairSamplingConfig, key: PlanKey, batch_size: int,
                 batches_per_step: int = 1) -> None:
        self.index, self.sampling, self.key, self.batch_size = index, sampling, key, batch_size
        self.pairs_per_epoch = pairs_per_rank(len(index.clips), key.world_size, sampling.pairs_per_clip)
        self.batches_per_epoch = epoch_batches(self.pairs_per_epoch, batch_size, batches_per_step)
        self._plans: dict[int, PairPlan] = {}

    def plan(self, epoch: int) -> PairPlan:
        """This rank's pairs of `epoch`."""
        if epoch not in self._plans:
            self._plans[epoch] = plan_epoch(self.index.clips, self.sampling, self.key.at(epoch))
            for old in [e for e in self._plans if e < epoch - 1]:
                del self._plans[old]
        return self._plans[epoch]

    def batch_slots(self, g: int) -> tuple[int, np.ndarray]:
        """(epoch, plan positions [B]) of global batch g, before any replacement of bad pairs."""
        epoch, b = divmod(g, self.batches_per_epoch)
        return epoch, batch_slice(self.pairs_per_epoch, self.batch_size, b)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_plans": {}}
