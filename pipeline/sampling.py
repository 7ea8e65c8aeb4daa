"""Pair-sampling math shared by every loader: which clips a rank reads in an epoch, which two frames
of each clip form a pair, and the one crop window and flip both frames get.

Everything is vectorised numpy over a whole epoch, keyed only by (seed, epoch, rank), so the DALI
loader, the webdataset fallback and the benchmark's reference loaders draw exactly the same pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import PairSamplingConfig

if TYPE_CHECKING:
    from pipeline.frame_index import FrameIndex

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 windows before falling back to a centre crop
REPLACEMENT_CANDIDATES = 64  # pairs tried in turn for one that reads a bad frame
# epoch_rng streams: 1 clip order, 2 pairs and crops, 4 replacements, 5 shard order, 6 a rank's clip order


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
    order = epoch_rng(seed, epoch, 0, stream=1).permutation(n_clips)      # same on every rank
    per_rank = math.ceil(n_clips / world_size)
    if world_size == 1 or shard_of is None or n_clips < world_size:
        padded = np.resize(order, per_rank * world_size)                   # wraps around
        return padded[rank * per_rank:(rank + 1) * per_rank].astype(np.int64)
    shard_of = np.asarray(shard_of)
    place = epoch_rng(seed, epoch, 0, stream=5).permutation(int(shard_of.max()) + 1)   # shard -> place
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
    """RandomResizedCrop windows, torchvision's algorithm vectorised: [N] sizes -> [N, 4] (y, x, h, w)."""
    hgt = np.asarray(heights, dtype=np.int64)
    wid = np.asarray(widths, dtype=np.int64)
    n = len(hgt)
    area = (hgt * wid)[:, None]
    target = area * rng.uniform(scale[0], scale[1], size=(n, CROP_ATTEMPTS))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, CROP_ATTEMPTS)))
    w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
    ok = (w > 0) & (h > 0) & (w <= wid[:, None]) & (h <= hgt[:, None])
    first = ok.argmax(axis=1)
    found = ok[np.arange(n), first]
    w = w[np.arange(n), first]
    h = h[np.arange(n), first]
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


def plan_epoch(n_frames: np.ndarray, heights: np.ndarray, widths: np.ndarray, cfg: PairSamplingConfig,
               seed: int, epoch: int, rank: int = 0, world_size: int = 1,
               shard_of: np.ndarray | None = None) -> PairPlan:
    """All pairs of one rank's epoch: its clips (`rank_clips`) in shuffled order, each repeated
    K = pairs_per_clip times in a row (repeated sampling: the K pairs of a clip are consecutive)."""
    share = rank_clips(len(n_frames), seed, epoch, rank, world_size, shard_of)
    clips = np.repeat(share, cfg.pairs_per_clip)
    rng = epoch_rng(seed, epoch, rank, stream=2)
    i, j = sample_frame_pairs(np.asarray(n_frames)[clips], cfg.gap_min, cfg.gap_max, rng)
    crop = sample_crops(np.asarray(heights)[clips], np.asarray(widths)[clips], cfg.crop_scale,
                        cfg.crop_ratio, rng)
    flip = rng.random(len(clips)) < cfg.flip_probability
    return PairPlan(clips, i, j, crop, flip)


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


def index_plan(index: FrameIndex, cfg: PairSamplingConfig, seed: int, epoch: int, rank: int = 0,
               world_size: int = 1) -> PairPlan:
    """`plan_epoch` over the clips of a shard folder's frame index (ranks split by shard)."""
    return plan_epoch(index.n_frames, index.height, index.width, cfg, seed, epoch, rank, world_size,
                      shard_of=index.shard)


def epoch_batches(n_pairs: int, batch_size: int, batches_per_step: int = 1) -> int:
    """Batches a loader delivers per epoch: enough to cover the plan (the last one wraps to the epoch's
    start), cut to a whole number of `batches_per_step` (at least one step's worth)."""
    full = batches_per_epoch(n_pairs, batch_size)
    if full < batches_per_step:
        raise ValueError(f"an epoch of {n_pairs} pairs fills {full} batches of {batch_size}, fewer than "
                         f"the {batches_per_step} of one step")
    return full - full % batches_per_step
