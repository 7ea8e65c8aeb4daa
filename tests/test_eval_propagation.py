"""The propagation core: exact on one-hot position features, the protocols' contexts and windows against a
brute-force restatement of CRW's and DINO's loops, pixel features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.features import PixelFeatures
from evaluation.propagation import (
    PropagationSettings,
    context_frames,
    extract_features,
    propagate,
    protocol_settings,
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
    PropagationSettings(topk=1, queue=0, pad_first_frame=False),
    PropagationSettings(topk=1, queue=2, radius=3, window="square"),
    protocol_settings("dino", topk=1),
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


def test_padded_context_holds_queue_minus_t_plus_one_copies_of_frame_zero() -> None:
    cropmae = protocol_settings("cropmae")
    for t in range(1, cropmae.queue + 1):
        frames = context_frames(t, cropmae)
        assert len(frames) == cropmae.queue and frames.count(0) == cropmae.queue - t + 1
        assert frames[-(t - 1):] == list(range(1, t)) if t > 1 else frames == [0] * cropmae.queue
    assert context_frames(cropmae.queue + 5, cropmae) == list(range(5, cropmae.queue + 5))
    dino = protocol_settings("dino")
    assert context_frames(1, dino) == [] and context_frames(3, dino) == [1, 2]
    assert context_frames(30, dino) == list(range(23, 30))


def brute_force(features: torch.Tensor, first: torch.Tensor, s: PropagationSettings) -> list[torch.Tensor]:
    """CRW's loop (padded video, additive −1e10 window on short-term frames, top-k then softmax) or DINO's
    (exp(cos / T) times a 0/1 window on every frame, keep values ≥ the k-th, normalise), one target at a time."""
    n, h, w, _ = features.shape
    feats = features.reshape(n, h * w, -1).double()
    allowed = window_mask(h, w, s, "cpu").double()                            # [hw target, hw source]
    labels = [first.reshape(first.shape[0], -1).T.double()]
    for t in range(1, n):
        if s.pad_first_frame:
            context = [0] + [max(0, t - s.queue + i) for i in range(s.queue)]
        else:
            context = [0] + list(range(max(1, t - s.queue), t))
        out = torch.zeros(h * w, first.shape[0], dtype=torch.float64)
        for q in range(h * w):
            aff, lab = [], []
            for k, c in enumerate(context):
                a = feats[c] @ feats[t, q]
                on = allowed[q] if (k > 0 or s.window_on_first_frame) else torch.ones(h * w, dtype=torch.float64)
                if s.pad_first_frame:
                    aff.append((a + (on - 1) * 1e10) / s.temperature)
                else:
                    aff.append(torch.exp(a / s.temperature) * on)
                lab.append(labels[c])
            aff_all, lab_all = torch.cat(aff), torch.cat(lab)
            if s.pad_first_frame:
                values, index = aff_all.topk(s.topk)
                out[q] = torch.softmax(values, 0) @ lab_all[index]
            else:
                kth = aff_all.topk(s.topk).values.min()
                kept = torch.where(aff_all >= kth, aff_all, torch.zeros_like(aff_all))
                out[q] = (kept / kept.sum()) @ lab_all
        labels.append(out)
    return [lab.T.reshape(first.shape[0], h, w) for lab in labels[1:]]


@pytest.mark.parametrize("protocol", ["cropmae", "dino"])
def test_propagation_equals_a_brute_force_restatement_of_the_reference_loop(protocol: str) -> None:
    generator = torch.Generator().manual_seed(0)
    n, h, w, dim = 9, 4, 6, 8
    raw = torch.randn(n, h, w, dim, generator=generator)
    raw = raw.cumsum(0) / torch.arange(1, n + 1).view(-1, 1, 1, 1)           # frames resemble each other
    features = F.normalize(raw, dim=-1)
    first = torch.softmax(3 * torch.randn(3, h, w, generator=generator), dim=0)
    settings = protocol_settings(protocol, queue=4, radius=2.0, topk=3)
    ours = list(propagate(features, first, settings))
    expected = brute_force(features, first, settings)
    for mine, ref in zip(ours, expected, strict=True):
        assert torch.allclose(mine.double(), ref, atol=1e-5)


def test_padding_changes_the_first_targets_as_the_reference_does() -> None:
    # Target 0 of frame 1 matches patch 5 of frame 0 (label 1) best; padding gives frame 0 queue + 1 votes.
    feats = torch.zeros(3, 1, 6, 2)
    feats[:, :, :, 0] = 1.0
    feats[0, 0, 5] = F.normalize(torch.tensor([1.0, 1.0]), dim=0)
    feats[1, 0, 0] = F.normalize(torch.tensor([1.0, 1.0]), dim=0)
    first = torch.zeros(2, 1, 6)
    first[0] = 1.0
    first[:, 0, 5] = torch.tensor([0.0, 1.0])
    padded = protocol_settings("cropmae", queue=3, topk=4, radius=10.0)
    (step, _) = propagate(feats, first, padded)
    assert step[1, 0, 0] == pytest.approx(1.0)                                 # 4 copies of patch 5 fill top-4
    (step, _) = propagate(feats, first, protocol_settings("cropmae", queue=3, topk=4, radius=10.0,
                                                           pad_first_frame=False))
    assert step[1, 0, 0] < 0.5                                                 # one copy among 3 others


@pytest.mark.parametrize("keep_ties", [True, False])
def test_dino_keeps_every_affinity_tied_with_the_kth(keep_ties: bool) -> None:
    # Target patch 0 of frame 1 matches patch 0 of frame 0 (cosine 1), then patches 1 and 2 exactly tied.
    c = F.normalize(torch.tensor([1.0, 1.0]), dim=0)
    feats = torch.zeros(2, 1, 4, 2)
    feats[0, 0] = torch.stack([torch.tensor([1.0, 0.0]), c, c, torch.tensor([0.0, 1.0])])
    feats[1, 0] = torch.tensor([1.0, 0.0])
    first = torch.eye(4)[:3].reshape(3, 1, 4)                                  # patch p has label p (3: none)
    settings = protocol_settings("dino", topk=2, keep_ties=keep_ties)
    (step,) = propagate(feats, first, settings)
    e1, ec = math.exp(1 / 0.1), math.exp(float(c[0]) / 0.1)
    if keep_ties:                                                              # 3 kept: 1, c, c
        expected = torch.tensor([e1, ec, ec]) / (e1 + 2 * ec)
        assert torch.allclose(step[:, 0, 0], expected, atol=1e-6)
    else:                                                                      # exactly 2 kept
        assert step[0, 0, 0] == pytest.approx(e1 / (e1 + ec), abs=1e-6)
        assert float(step[1:, 0, 0].max()) == pytest.approx(ec / (e1 + ec), abs=1e-6)


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
    settings = PropagationSettings(topk=1, radius=radius, queue=0, pad_first_frame=False,
                                   window_on_first_frame=on_first)
    (step,) = propagate(feats, first, settings)
    assert int(step[:, 0, 0].argmax()) == expected


def test_pixel_features_shapes_and_extraction_is_normalised() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 56, 3), dtype=np.uint8)
    x = torch.randn(2, 3, 32, 48)
    assert PixelFeatures(16, "flatten")(x).shape == (2, 2, 3, 768)
    assert PixelFeatures(16, "mean")(x).shape == (2, 2, 3, 3)
    assert torch.allclose(PixelFeatures(16, "mean")(x)[0, 0, 0], x[0, :, :16, :16].mean(dim=(1, 2)))
    settings = PropagationSettings(fixed_size=None, size_multiple=8, batch_size=2)
    feats = extract_features(PixelFeatures(8), frames, settings)
    assert feats.shape == (3, 5, 7, 192)                                       # 40x56 → 40x56, /8
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3, 5, 7), atol=1e-5)
    assert not math.isnan(float(feats.sum()))
