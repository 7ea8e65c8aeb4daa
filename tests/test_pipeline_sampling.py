"""Pair-sampling math (pipeline.sampling): gaps, clamping, crops, rank split, K pairs per clip."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import PairSamplingConfig
from pipeline.frame_index import ClipTable
from pipeline.sampling import (
    PlanKey,
    batch_slice,
    plan_epoch,
    rank_clips,
    sample_crops,
    sample_frame_pairs,
)


def test_gaps_stay_in_range_and_cover_both_ends() -> None:
    rng = np.random.default_rng(0)
    n = np.full(20000, 190)
    i, j = sample_frame_pairs(n, 4, 48, rng)
    gap = j - i
    assert gap.min() == 4 and gap.max() == 48          # inclusive at both ends (no off-by-one)
    assert set(np.unique(gap)) == set(range(4, 49))
    assert (i >= 0).all() and (j < n).all()


@pytest.mark.parametrize("n_frames", [1, 2, 3, 5, 10, 30, 49, 50])
def test_gaps_are_clamped_for_short_clips(n_frames: int) -> None:
    rng = np.random.default_rng(n_frames)
    n = np.full(5000, n_frames)
    i, j = sample_frame_pairs(n, 4, 48, rng)
    hi = min(48, n_frames - 1)
    lo = min(4, hi)
    gap = j - i
    assert gap.min() >= lo and gap.max() <= hi
    assert (i >= 0).all() and (j <= n_frames - 1).all()
    if hi > lo:
        assert gap.min() == lo and gap.max() == hi        # the clamped range is still fully used


def test_crops_respect_scale_ratio_and_frame() -> None:
    rng = np.random.default_rng(1)
    h = np.full(5000, 240)
    w = np.full(5000, 320)
    crop = sample_crops(h, w, (0.5, 1.0), (3 / 4, 4 / 3), rng)
    y, x, ch, cw = crop.T
    assert (y >= 0).all() and (x >= 0).all() and (y + ch <= 240).all() and (x + cw <= 320).all()
    area = ch * cw / (240 * 320)
    assert area.min() > 0.48 and area.max() <= 1.0
    ratio = cw / ch
    assert ratio.min() > 0.74 and ratio.max() < 1.35


def test_crop_falls_back_to_a_centre_crop_for_extreme_frames() -> None:
    crop = sample_crops(np.array([10]), np.array([1000]), (0.9, 1.0), (3 / 4, 4 / 3),
                        np.random.default_rng(0))
    _y, x, h, w = crop[0]
    assert h == 10 and w == round(10 * 4 / 3) and x == (1000 - w) // 2


@pytest.mark.parametrize("n_clips,world", [(12, 3), (10, 3), (7, 4), (5, 1)])
def test_ranks_see_disjoint_clips_and_equal_counts(n_clips: int, world: int) -> None:
    shares = [rank_clips(n_clips, seed=3, epoch=1, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in shares}) == 1
    assert set(np.concatenate(shares).tolist()) == set(range(n_clips))
    total = sum(len(s) for s in shares)
    counts = np.bincount(np.concatenate(shares), minlength=n_clips)
    assert (counts >= 1).all() and counts.sum() - n_clips == total - n_clips   # only padding repeats
    if n_clips % world == 0:
        assert (counts == 1).all()


def test_epochs_reshuffle_deterministically() -> None:
    a = rank_clips(50, seed=0, epoch=0, rank=0, world_size=1)
    assert (a == rank_clips(50, seed=0, epoch=0, rank=0, world_size=1)).all()
    assert not (a == rank_clips(50, seed=0, epoch=1, rank=0, world_size=1)).all()
    assert not (a == rank_clips(50, seed=1, epoch=0, rank=0, world_size=1)).all()


def test_plan_has_k_consecutive_pairs_per_clip() -> None:
    cfg = PairSamplingConfig(pairs_per_clip=3)
    n = np.array([40, 10, 60, 3, 50])
    plan = plan_epoch(ClipTable(n, np.full(5, 48), np.full(5, 64)), cfg, PlanKey(seed=0, epoch=0))
    assert len(plan) == 15
    assert (np.bincount(plan.clip, minlength=5) == 3).all()
    assert (plan.clip.reshape(5, 3) == plan.clip[::3, None]).all()
    assert (plan.j < n[plan.clip]).all()


def test_last_batch_wraps_to_the_epoch_start() -> None:
    assert batch_slice(10, 4, 2).tolist() == [8, 9, 0, 1]
