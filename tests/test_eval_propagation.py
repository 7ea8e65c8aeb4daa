"""The propagation core: exact on one-hot position features, windows, input sizes, pixel features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.features import PixelFeatures
from evaluation.propagation import (
    PropagationSettings,
    downsample_labels,
    eval_size,
    extract_features,
    propagate,
    upsample_argmax,
    window_mask,
)


def shifting_world(n_frames: int, h: int, w: int, shift: int) -> torch.Tensor:
    """Features [T, h, w, h·w]: cell (i, j) of frame t sees world cell (i, (j − shift·t) mod w), one-hot."""
    feats = torch.zeros(n_frames, h, w, h * w)
    for t in range(n_frames):
        for i in range(h):
            for j in range(w):
                feats[t, i, j, i * w + (j - shift * t) % w] = 1.0
    return feats


@pytest.mark.parametrize("settings", [
    PropagationSettings(topk=1, queue=3),
    PropagationSettings(topk=7, temperature=0.01, queue=20),
    PropagationSettings(topk=1, queue=0),
    PropagationSettings(topk=1, queue=2, radius=3, window="square"),
])
def test_one_hot_position_features_reproduce_a_known_shift_exactly(settings: PropagationSettings) -> None:
    h, w, n_frames, shift = 5, 8, 6, 1
    first = torch.zeros(h, w, dtype=torch.long)
    first[1:3, 2:4] = 1
    first[3, 5:7] = 2
    onehot = F.one_hot(first, 3).permute(2, 0, 1).float()                     # [C, h, w]
    steps = list(propagate(shifting_world(n_frames, h, w, shift), onehot, settings))
    assert len(steps) == n_frames - 1
    for t, soft in enumerate(steps, start=1):
        expected = torch.roll(first, shifts=shift * t, dims=1)
        assert torch.equal(soft.argmax(0), expected)
        assert torch.allclose(soft.sum(0), torch.ones(h, w))                   # weights sum to 1


def test_windows_circle_is_strict_and_square_is_inclusive() -> None:
    circle = window_mask(5, 5, PropagationSettings(radius=2, window="circle"), "cpu").reshape(5, 5, 5, 5)
    square = window_mask(5, 5, PropagationSettings(radius=2, window="square"), "cpu").reshape(5, 5, 5, 5)
    centre_circle, centre_square = circle[2, 2], square[2, 2]
    assert centre_circle[2, 3] and not centre_circle[2, 4] and not centre_circle[4, 4]
    assert centre_square.all()


@pytest.mark.parametrize(("radius", "on_first", "expected"), [(1, True, 0), (10, True, 1), (1, False, 1)])
def test_the_window_limits_matches_and_the_first_frame_is_free_by_default(radius: float, on_first: bool,
                                                                          expected: int) -> None:
    # Target patch 0 of frame 1 matches only patch 5 of frame 0 (label 1); everything else has label 0.
    feats = torch.zeros(2, 1, 6, 2)
    feats[:, :, :, 0] = 1.0
    feats[0, 0, 5] = torch.tensor([0.0, 1.0])
    feats[1, 0, 0] = torch.tensor([0.0, 1.0])
    first = torch.zeros(2, 1, 6)
    first[0] = 1.0
    first[:, 0, 5] = torch.tensor([0.0, 1.0])
    settings = PropagationSettings(topk=1, radius=radius, queue=0, window_on_first_frame=on_first)
    (step,) = propagate(feats, first, settings)
    assert int(step[:, 0, 0].argmax()) == expected


def test_eval_size_follows_dino_for_davis_and_keeps_native_sizes() -> None:
    assert eval_size(480, 854, PropagationSettings(), 16) == (480, 832)
    assert eval_size(480, 910, PropagationSettings(), 16) == (480, 896)
    assert eval_size(854, 480, PropagationSettings(), 16) == (832, 480)
    assert eval_size(240, 428, PropagationSettings(short_side=None, size_multiple=16), 16) == (240, 416)
    assert eval_size(240, 320, PropagationSettings(fixed_size=(320, 320)), 16) == (320, 320)
    assert eval_size(480, 640, PropagationSettings(short_side=None, long_side=880), 16) == (640, 880)


def test_label_downsampling_and_upsampling_keep_ids() -> None:
    ids = torch.zeros(32, 48, dtype=torch.long)
    ids[8:24, 16:40] = 1
    onehot = F.one_hot(ids, 2).permute(2, 0, 1).float()
    for mode in ("bilinear", "nearest", "area"):
        small = downsample_labels(onehot, (4, 6), mode)
        assert small.shape == (2, 4, 6)
        assert torch.allclose(small.sum(0), torch.ones(4, 6))
    up = upsample_argmax(downsample_labels(onehot, (4, 6), "area"), (32, 48))
    assert up.dtype == np.uint8 and up.shape == (32, 48)
    assert (up == ids.numpy()).mean() > 0.9


def test_pixel_features_shapes_and_extraction_is_normalised() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 56, 3), dtype=np.uint8)
    x = torch.randn(2, 3, 32, 48)
    assert PixelFeatures(16, "flatten")(x).shape == (2, 2, 3, 768)
    assert PixelFeatures(16, "mean")(x).shape == (2, 2, 3, 3)
    assert torch.allclose(PixelFeatures(16, "mean")(x)[0, 0, 0], x[0, :, :16, :16].mean(dim=(1, 2)))
    settings = PropagationSettings(short_side=None, size_multiple=8, batch_size=2)
    feats = extract_features(PixelFeatures(8), frames, settings)
    assert feats.shape == (3, 5, 7, 192)                                       # 40x56 → 40x56, /8
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3, 5, 7), atol=1e-5)
