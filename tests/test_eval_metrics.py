"""DAVIS J / F / statistics on hand-made masks with known values, and a fixture scored by the official code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.dataset_io import PALETTE
from evaluation.davis_metrics import (
    boundary_radius,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    f_measure,
    score_sequence,
    seg2bmap,
)
from evaluation.davis_score import score_results


def square(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top:top + size, left:left + size] = True
    return mask


def test_empty_masks_score_one_and_a_missed_object_scores_zero() -> None:
    empty = np.zeros((2, 20, 30), bool)
    assert db_eval_iou(empty, empty).tolist() == [1.0, 1.0]
    assert db_eval_boundary(empty, empty).tolist() == [1.0, 1.0]
    gt = square((20, 30), 5, 5, 6)
    assert float(db_eval_iou(gt, np.zeros_like(gt))) == 0.0
    assert f_measure(np.zeros_like(gt), gt) == 0.0          # P = 1, R = 0
    assert f_measure(gt, np.zeros_like(gt)) == 0.0          # P = 0, R = 1


def test_seg2bmap_marks_the_pixel_and_its_north_west_neighbours() -> None:
    seg = np.zeros((5, 5), bool)
    seg[2, 2] = True
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    assert (seg2bmap(seg) == expected).all()


def test_one_pixel_shift_keeps_f_at_one_and_gives_the_expected_iou() -> None:
    gt = square((40, 40), 10, 10, 10)
    shifted = np.roll(gt, 1, axis=1)
    assert boundary_radius(gt.shape) == 1                    # ceil(0.008 · 56.6)
    assert float(db_eval_iou(gt, shifted)) == pytest.approx(90 / 110)
    assert f_measure(shifted, gt) == 1.0
    far = np.roll(gt, 15, axis=0)                            # no boundary pixel within 1 px
    assert f_measure(far, gt) == 0.0


def test_boundary_tolerance_grows_with_the_image_diagonal() -> None:
    assert boundary_radius((480, 854)) == 8
    assert boundary_radius((480, 910)) == 9
    assert boundary_radius((480, 1152)) == 10
    gt = square((480, 854), 100, 100, 200)
    assert f_measure(np.roll(gt, 8, axis=1), gt) == 1.0      # within the 8-px disk
    assert f_measure(np.roll(gt, 12, axis=1), gt) < 1.0


def test_statistics_mean_recall_and_decay() -> None:
    mean, recall, decay = db_statistics(np.array([1, 1, 1, 1, 0, 0, 0, 0], float))
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)         # bins [0:3] and [5:8]
    mean, recall, decay = db_statistics(np.array([0.2, 0.6, 0.8, 0.4]))
    assert mean == pytest.approx(0.5) and recall == pytest.approx(0.5)
    assert decay == pytest.approx(np.mean([0.2, 0.6]) - np.mean([0.8, 0.4]))


def test_objects_are_matched_by_id_and_missing_ids_score_zero() -> None:
    gt = np.zeros((3, 20, 20), np.uint8)
    gt[:, 2:8, 2:8] = 1
    gt[:, 12:18, 12:18] = 2
    result = np.where(gt == 1, 1, 0).astype(np.uint8)        # object 2 never predicted
    j, f = score_sequence(gt, result, n_objects=2)
    assert j.shape == (2, 3)
    assert j[0].tolist() == [1.0] * 3 and j[1].tolist() == [0.0] * 3
    assert f[0].tolist() == [1.0] * 3 and f[1].tolist() == [0.0] * 3
    swapped = np.where(gt == 1, 2, np.where(gt == 2, 1, 0)).astype(np.uint8)
    j, _ = score_sequence(gt, swapped, n_objects=2)
    assert (j == 0).all()


# --- A fixture scored by the official davis2017-evaluation (ac7c43f) -----------------------------------------
# Masks are pure arithmetic (no RNG), so the folder can be rebuilt identically. The expected numbers were
# printed by the official DAVISEvaluation(task='semi-supervised') on this folder (see the benchmarks note).

def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _save(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(PALETTE)
    image.save(path)


def write_toy_davis(root: Path, results: Path) -> None:
    """Two sequences (64x48, 3 objects, 9 frames; 90x50, 1 object, 7 frames) and perturbed results."""
    specs = {"toy-a": ((48, 64), 9, 3), "toy-b": ((50, 90), 7, 1)}
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(specs) + "\n")
    for seq, (shape, n_frames, n_objects) in specs.items():
        for t in range(n_frames):
            gt = np.zeros(shape, np.uint8)
            res = np.zeros(shape, np.uint8)
            for k in range(1, n_objects + 1):
                cy, cx = 12 + 7 * k + (t % 3), 10 + 14 * k + 2 * t
                obj = _ellipse(shape, cy, cx, 5 + k, 7 + (t % 2))
                gt[obj] = k
                guess = _ellipse(shape, cy + (k % 2), cx - (t % 4), 5 + k + (t % 3) - 1, 7)
                if not (k == 2 and t in (3, 4)):                      # object 2 lost for two frames
                    res[guess] = k
            gt[0:2, 0:3] = 255                                        # void: counted as background
            if t == 5:
                res[shape[0] - 3:, :4] = 1                            # a spurious blob
            _save(root / "Annotations" / "480p" / seq / f"{t:05d}.png", gt)
            frame = root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((*shape, 3), 128, np.uint8)).save(frame)
            if 0 < t < n_frames - 1:                                  # first and last frames are never read
                _save(results / seq / f"{t:05d}.png", res)


OFFICIAL = {
    "J&F-Mean": 0.6246991089288906,
    "J-Mean": 0.643042090134579,
    "J-Recall": 0.9285714285714286,
    "J-Decay": -0.03331200752132164,
    "F-Mean": 0.6063561277232021,
    "F-Recall": 0.6642857142857143,
    "F-Decay": -0.03391714706457678,
    "per_object": {
        "toy-a_1": {"J": 0.6582828958236222, "F": 0.6313635663838644},
        "toy-a_2": {"J": 0.5056832254306901, "F": 0.4639148067066524},
        "toy-a_3": {"J": 0.7245668730916205, "F": 0.647003428389786},
        "toy-b_1": {"J": 0.6836353661923831, "F": 0.6831427094125059},
    },
}


def test_matches_the_official_numbers_on_the_toy_fixture(tmp_path: Path) -> None:
    write_toy_davis(tmp_path / "DAVIS", tmp_path / "results")
    metrics = score_results(tmp_path / "DAVIS", tmp_path / "results")
    for key, expected in OFFICIAL.items():
        if key == "per_object":
            for name, jf in expected.items():
                assert metrics["per_object"][name]["J"] == pytest.approx(jf["J"], abs=1e-6)
                assert metrics["per_object"][name]["F"] == pytest.approx(jf["F"], abs=1e-6)
        else:
            assert metrics[key] == pytest.approx(expected, abs=1e-6), key
