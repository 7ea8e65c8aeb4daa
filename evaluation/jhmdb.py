"""JHMDB pose propagation: joints as Gaussian label maps, propagated, decoded by a top-k weighted mean; PCK.

Layout: `JHMDB/Rename_Images/<action>/<video>/00001.png ...`, `JHMDB/joint_positions/<action>/<video>/
joint_positions.mat` (`pos_img` [2, 15, T], MATLAB 1-based pixels), `JHMDB/splits/<action>_test_split1.txt`
(lines `<video>.avi 1|2`, 2 = test). PCK follows the CRW/TimeCycle `eval_pck.py`
(a joint is found when within α × 0.6 × the diagonal of the box around the true joints).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch

from evaluation.dataset_io import read_frame
from evaluation.features import FeatureExtractor
from evaluation.propagation import extract_features, propagate
from evaluation.settings import PropagationSettings, eval_size
from evaluation.video_lists import choose_videos
from siammae_common.console import UserError, progress

JOINTS = ("neck", "belly", "face", "right_shoulder", "left_shoulder", "right_hip", "left_hip", "right_elbow",
          "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist", "right_ankle", "left_ankle")
SIGMA = 0.5          # Gaussian σ in feature cells
THRESHOLDS = (0.1, 0.2)


@dataclass(frozen=True)
class JhmdbVideo:
    """One video: frame PNGs in order and its joints, 0-based pixel coordinates [2, J, T] (x, y)."""

    name: str                  # <action>/<video>
    frames: tuple[Path, ...]
    joints: np.ndarray


def _read_joints(path: Path) -> np.ndarray:
    try:
        pos = scipy.io.loadmat(str(path))["pos_img"]
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{path}: cannot read 'pos_img' ({err})") from err
    if pos.ndim != 3 or pos.shape[0] != 2:
        raise UserError(f"{path}: pos_img has shape {pos.shape}, expected [2, joints, frames]")
    return np.asarray(pos, dtype=np.float64) - 1.0


def _test_videos(root: Path, split: int) -> list[str] | None:
    split_files = sorted((root / "splits").glob(f"*_test_split{split}.txt"))
    if not split_files:
        return None
    names = []
    for split_file in split_files:
        action = split_file.name[: -len(f"_test_split{split}.txt")]
        for line in split_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == "2":
                names.append(f"{action}/{Path(parts[0]).stem}")
    return names


def open_jhmdb(root: Path, split: int = 1, videos: Sequence[str] | None = None, list_file: Path | None = None,
               all_videos: bool = False) -> list[JhmdbVideo]:
    """The test videos of `split` (or those named as `<action>/<video>`, or those of `list_file`; every
    video only with all_videos: without splits/ the test set is unknown, which is an error)."""
    root = Path(root)
    images, joints = root / "Rename_Images", root / "joint_positions"
    for folder in (images, joints):
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder (expected the JHMDB layout)")
    splits = f"{root / 'splits'}/<action>_test_split{split}.txt"
    names = choose_videos(videos, list_file, _test_videos(root, split), splits, images, all_videos, "videos",
                          f"download splits.zip from the JHMDB site and unzip it into {root}", parts=2)
    out = []
    for name in names:
        frames = tuple(sorted((images / name).glob("*.png"), key=lambda p: int(p.stem)))
        if not frames:
            raise UserError(f"{images / name}: no PNG frames")
        pos = _read_joints(joints / name / "joint_positions.mat")
        n = min(len(frames), pos.shape[2])
        out.append(JhmdbVideo(name, frames[:n], pos[:, :, :n]))
    if not out:
        raise UserError(f"{root}: no videos to evaluate")
    return out


def gaussian_maps(points: np.ndarray, grid: tuple[int, int], sigma: float = SIGMA,
                  placement: str = "int") -> np.ndarray:
    """Label maps [J + 1, h, w]: background channel (1 where no joint reaches) + one Gaussian per joint.

    points: [2, J] in feature cells. Each Gaussian (peak 1, unnormalised) fills a (6σ + 1)-cell square
    whose corner is p − 3σ rounded by `placement`, peaking at corner + size // 2 (pose-hg-train's
    draw_labelmap). "int" truncates toward zero as CRW's and CropMAE's port does (a point within 3σ of
    the top or left edge moves a cell); "floor" is the original's rounding.
    """
    if placement not in ("int", "floor"):
        raise ValueError(f"placement {placement!r}: expected 'int' or 'floor'")
    corner = int if placement == "int" else math.floor
    h, w = grid
    size = int(6 * sigma + 1)
    centre = size // 2
    offs = np.arange(size, dtype=np.float64)
    g = np.exp(-((offs[None, :] - centre) ** 2 + (offs[:, None] - centre) ** 2) / (2 * sigma**2))
    maps = np.zeros((points.shape[1], h, w))
    for j, (x, y) in enumerate(points.T):
        x0, y0 = corner(x - 3 * sigma), corner(y - 3 * sigma)
        x1, y1 = corner(x + 3 * sigma + 1), corner(y + 3 * sigma + 1)
        if x0 >= w or y0 >= h or x1 < 0 or y1 < 0:
            continue
        gx, gy = slice(max(0, -x0), min(x1, w) - x0), slice(max(0, -y0), min(y1, h) - y0)
        maps[j, max(0, y0):min(y1, h), max(0, x0):min(x1, w)] = g[gy, gx]
    background = (maps.sum(0) == 0).astype(np.float64)[None]
    return np.concatenate([background, maps])


def decode_joints(labels: torch.Tensor, topk: int = 5) -> np.ndarray:
    """Soft maps [J + 1, h, w] (background first) → joint cells [2, J] (x, y); −1 where a map is all zero."""
    maps = labels[1:].flatten(1).float()                                    # [J, h·w]
    w = labels.shape[-1]
    values, index = maps.topk(min(topk, maps.shape[1]), dim=1)
    weights = values / values.sum(1, keepdim=True).clamp_min(1e-12)
    xs = (weights * (index % w).float()).sum(1)
    ys = (weights * torch.div(index, w, rounding_mode="floor").float()).sum(1)
    out = torch.stack([xs, ys]).cpu().numpy()
    out[:, (maps.abs().sum(1) == 0).cpu().numpy()] = -1.0
    return out


def pck_distances(pred: np.ndarray, gt: np.ndarray) -> list[list[float]]:
    """Normalised distances per joint type, frames ≥ 1. pred, gt: pixels [2, J, T]; pred < 0 = invisible.

    Normaliser = 0.6 × the diagonal of the box around the GT joints whose prediction is visible.
    """
    per_joint: list[list[float]] = [[] for _ in range(gt.shape[1])]
    for t in range(1, gt.shape[2]):
        visible = pred[0, :, t] >= 0
        if not visible.any():
            continue
        box = gt[:, visible, t]
        norm = 0.6 * float(np.linalg.norm(box.max(1) - box.min(1)))
        for j in np.flatnonzero(visible):
            per_joint[j].append(float(np.linalg.norm(pred[:, j, t] - gt[:, j, t])) / norm
                                if norm > 0 else float("inf"))
    return per_joint


def pck(per_joint: Sequence[Sequence[float]], threshold: float) -> tuple[float, list[float]]:
    """(mean over joint types of the fraction within `threshold`, per-joint fractions)."""
    fractions = [float(np.mean(np.asarray(d) <= threshold)) if len(d) else float("nan") for d in per_joint]
    return float(np.nanmean(fractions)), fractions


def propagate_video(extractor: FeatureExtractor, video: JhmdbVideo, settings: PropagationSettings) -> np.ndarray:
    """Predicted joints in pixels [2, J, T]; frame 0 is the ground truth."""
    frames = np.stack([read_frame(p) for p in video.frames])
    height, width = frames.shape[1:3]
    features = extract_features(extractor, frames, settings, desc=video.name)      # [T, h, w, D]
    h, w = features.shape[1:3]
    size = eval_size(height, width, settings, extractor.patch_size)
    # pixels → feature cells in CRW's order of operations: x · new_w / ori_w / stride
    cells = np.stack([video.joints[0, :, 0] * size[1] / width / (size[1] / w),
                      video.joints[1, :, 0] * size[0] / height / (size[0] / h)])
    first = torch.from_numpy(gaussian_maps(cells, (h, w), placement=settings.pose_placement)).float()
    pred = np.empty_like(video.joints)
    pred[:, :, 0] = video.joints[:, :, 0]
    for t, soft in enumerate(propagate(features, first, settings), start=1):
        xy = decode_joints(soft, settings.pose_topk)
        visible = xy[0] >= 0
        pred[0, :, t] = np.where(visible, xy[0] / w * width, -1.0)
        pred[1, :, t] = np.where(visible, xy[1] / h * height, -1.0)
    return pred


def run_jhmdb(extractor: FeatureExtractor, root: Path, out_dir: Path | None, settings: PropagationSettings,
              split: int = 1, videos: Sequence[str] | None = None, list_file: Path | None = None,
              all_videos: bool = False) -> dict:
    """Propagate every test video; PCK@0.1 / 0.2 (fractions) per joint type, averaged over joints."""
    chosen = open_jhmdb(root, split, videos, list_file, all_videos)
    per_joint: list[list[float]] = [[] for _ in range(chosen[0].joints.shape[1])]
    for video in progress(chosen, desc=f"jhmdb {extractor.name}", unit="video"):
        pred = propagate_video(extractor, video, settings)
        if out_dir is not None:
            target = Path(out_dir) / "joints" / f"{video.name}.npy"
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, pred)
        for j, d in enumerate(pck_distances(pred, video.joints)):
            per_joint[j].extend(d)
    metrics: dict = {"features": extractor.name, "protocol": settings.protocol, "settings": settings.to_dict(),
                     "videos": len(chosen)}
    names = JOINTS if len(per_joint) == len(JOINTS) else [f"joint{j}" for j in range(len(per_joint))]
    metrics["per_joint"] = {name: {} for name in names}
    for threshold in THRESHOLDS:
        mean, fractions = pck(per_joint, threshold)
        metrics[f"PCK@{threshold}"] = mean
        for name, value in zip(names, fractions):
            metrics["per_joint"][name][f"PCK@{threshold}"] = value
    return metrics
