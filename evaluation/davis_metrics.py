"""DAVIS-2017 semi-supervised metrics, re-implemented to match davis2017-evaluation (commit ac7c43f) exactly.

J = region IoU, F = boundary F-measure (seg2bmap + disk dilation, bound_th 0.008 of the image diagonal),
per-object Mean / Recall / Decay, J&F-Mean = mean of the per-object J and F means. The boundary
dilation is OpenCV's, as in the official code (numpy and cv2 only).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

BOUND_TH = 0.008
SUMMARY_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def db_eval_iou(annotation: np.ndarray, segmentation: np.ndarray) -> np.ndarray:
    """Region similarity J per frame. annotation, segmentation: bool [T, H, W] or [H, W] → [T] or [].

    A frame where both masks are empty scores 1 (official behaviour).
    """
    if annotation.shape != segmentation.shape:
        raise ValueError(f"annotation {annotation.shape} and segmentation {segmentation.shape} differ in shape")
    annotation = annotation.astype(bool)
    segmentation = segmentation.astype(bool)
    inters = np.sum(segmentation & annotation, axis=(-2, -1))
    union = np.sum(segmentation | annotation, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = np.asarray(inters / union, dtype=np.float64)
    j[np.isclose(union, 0)] = 1.0
    return j


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a binary mask [H, W] → bool [H, W] (D. Martin's BSDS definition).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour; the last row
    and column compare only along the image edge, and the bottom-right pixel is never a boundary.
    """
    seg = seg.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def disk(radius: int) -> np.ndarray:
    """Disk footprint {x² + y² ≤ r²} of shape [2r+1, 2r+1] (as skimage.morphology.disk)."""
    offsets = np.arange(-radius, radius + 1)
    return offsets[None, :] ** 2 + offsets[:, None] ** 2 <= radius**2


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Tolerance in pixels: bound_th itself if ≥ 1, else ceil(bound_th · image diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * float(np.linalg.norm(shape)))


def _dilate(bmap: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary dilation of a boundary map by the disk, as the official cv2.dilate call (outside = empty)."""
    return cv2.dilate(bmap.view(np.uint8), footprint).view(bool)


def f_measure(foreground: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of one frame. foreground, gt: binary [H, W]."""
    footprint = disk(boundary_radius(foreground.shape, bound_th)).astype(np.uint8)
    fg_boundary = seg2bmap(foreground)
    gt_boundary = seg2bmap(gt)
    n_fg = int(fg_boundary.sum())
    n_gt = int(gt_boundary.sum())
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = float(np.sum(fg_boundary & _dilate(gt_boundary, footprint))) / n_fg
        recall = float(np.sum(gt_boundary & _dilate(fg_boundary, footprint))) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def db_eval_boundary(annotation: np.ndarray, segmentation: np.ndarray, bound_th: float = BOUND_TH) -> np.ndarray:
    """Boundary F per frame. annotation, segmentation: binary [T, H, W] → [T] (or [H, W] → [])."""
    if annotation.shape != segmentation.shape:
        raise ValueError(f"annotation {annotation.shape} and segmentation {segmentation.shape} differ in shape")
    if annotation.ndim == 2:
        return np.asarray(f_measure(segmentation, annotation, bound_th))
    return np.array([f_measure(segmentation[t], annotation[t], bound_th) for t in range(annotation.shape[0])])


def db_statistics(per_frame_values: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall = fraction > 0.5, Decay = mean of the first quarter − mean of the last) of one object.

    The bin edges are cast to uint8 as in the official code, so decay is only meaningful below 256 frames.
    """
    values = np.asarray(per_frame_values, dtype=np.float64)
    with warnings.catch_warnings():  # empty slices give nan, as in the official code
        warnings.simplefilter("ignore", category=RuntimeWarning)
        ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.uint8)
        bins = [values[ids[i]:ids[i + 1] + 1] for i in range(4)]
        mean = float(np.nanmean(values))
        recall = float(np.nanmean(values > 0.5))
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def score_sequence(gt_ids: np.ndarray, result_ids: np.ndarray, n_objects: int,
                   bound_th: float = BOUND_TH) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame J and F of one sequence on the frames given (the caller drops first and last).

    gt_ids, result_ids: integer id maps [T, H, W] (GT void already set to 0); objects are ids 1..n_objects,
    matched by id. Returns (J, F), each [n_objects, T].
    """
    if gt_ids.shape != result_ids.shape:
        raise ValueError(f"GT {gt_ids.shape} and result {result_ids.shape} differ in shape")
    n_frames = gt_ids.shape[0]
    j = np.zeros((n_objects, n_frames))
    f = np.zeros((n_objects, n_frames))
    for k in range(1, n_objects + 1):
        gt_k = gt_ids == k
        res_k = result_ids == k
        j[k - 1] = db_eval_iou(gt_k, res_k)
        f[k - 1] = db_eval_boundary(gt_k, res_k, bound_th)
    return j, f


@dataclass(frozen=True)
class ObjectScore:
    """Per-frame J and F of one object (`<seq>_<id>`) over the evaluated frames."""

    j: np.ndarray  # [T_eval]
    f: np.ndarray  # [T_eval]


def summarise(per_object: Mapping[str, ObjectScore]) -> dict:
    """The official global numbers plus per-object means; every object weighs the same."""
    stats_j = {name: db_statistics(s.j) for name, s in per_object.items()}
    stats_f = {name: db_statistics(s.f) for name, s in per_object.items()}

    def mean_of(stats: dict, index: int) -> float:
        return float(np.mean([v[index] for v in stats.values()])) if stats else math.nan

    j_mean, f_mean = mean_of(stats_j, 0), mean_of(stats_f, 0)
    summary = {
        "J&F-Mean": (j_mean + f_mean) / 2.0,
        "J-Mean": j_mean, "J-Recall": mean_of(stats_j, 1), "J-Decay": mean_of(stats_j, 2),
        "F-Mean": f_mean, "F-Recall": mean_of(stats_f, 1), "F-Decay": mean_of(stats_f, 2),
    }
    summary["per_object"] = {name: {"J": stats_j[name][0], "F": stats_f[name][0]} for name in per_object}
    return summary
