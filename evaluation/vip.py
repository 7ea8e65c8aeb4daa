"""VIP human-part propagation: the first frame's 20 part classes propagated; mIoU from one confusion matrix.

Layout: `VIP/Images/<video>/<frame>.jpg`, `VIP/Annotations/Category_ids/<video>/<frame>.png` (class ids,
single channel), `VIP/lists/val_videos.txt` (the validation videos; without it, `--list` or `--all-videos`).
Frames without an annotation are propagated through but not scored; the first frame must be annotated.
mIoU as CRW's `eval_vip.py` (one confusion matrix over all scored frames, IoU per class, then their mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from evaluation.dataset_io import read_frame, read_id_png
from evaluation.features import FeatureExtractor
from evaluation.frames import IoPool
from evaluation.segmentation import propagate_ids
from evaluation.settings import PropagationSettings
from evaluation.video_lists import choose_videos, own_list
from siammae_common.console import UserError, progress

N_CLASSES = 20
CLASSES = ("background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks", "pants",
           "gloves", "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm", "right-leg", "left-leg",
           "right-shoe", "left-shoe")


@dataclass(frozen=True)
class VipVideo:
    """One video: every frame in order, and the annotation PNG of each frame that has one (else None)."""

    name: str
    frames: tuple[Path, ...]
    labels: tuple[Path | None, ...]


def open_vip(root: Path, videos: Sequence[str] | None = None, list_file: Path | None = None,
             all_videos: bool = False) -> list[VipVideo]:
    """The videos named, else those of `list_file`, else those of `lists/val_videos.txt`; every folder
    under `Images/` only with all_videos (without the list the validation set is unknown: an error)."""
    root = Path(root)
    images, labels = root / "Images", root / "Annotations" / "Category_ids"
    for folder in (images, labels):
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder (expected the VIP layout)")
    val_list = root / "lists" / "val_videos.txt"
    names = choose_videos(videos, list_file, own_list(val_list), str(val_list), images, all_videos, "videos",
                          "it comes with VIP_Fine.zip: point --vip-root at the extracted VIP_Fine/ (or its parent)")
    out = []
    for name in names:
        frames = tuple(sorted((images / name).glob("*.jpg")))
        if not frames:
            raise UserError(f"{images / name}: no JPEG frames")
        annotated = tuple(p if p.is_file() else None for p in (labels / name / f"{f.stem}.png" for f in frames))
        if annotated[0] is None:
            raise UserError(f"{labels / name / (frames[0].stem + '.png')}: the first frame must be annotated")
        out.append(VipVideo(name, frames, annotated))
    if not out:
        raise UserError(f"{root}: no videos to evaluate")
    return out


def confusion(gt: np.ndarray, pred: np.ndarray, n: int = N_CLASSES) -> np.ndarray:
    """n × n counts (rows GT, columns prediction); GT values outside [0, n) are ignored."""
    keep = (gt >= 0) & (gt < n)
    return np.bincount(n * gt[keep].astype(np.int64) + pred[keep], minlength=n * n).reshape(n, n)


def miou(hist: np.ndarray) -> tuple[float, np.ndarray]:
    """(nanmean over classes, per-class IoU = TP / (GT + Pred − TP)); classes never seen give nan."""
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    return float(np.nanmean(iou)), iou


def _frame_confusion(label_path: Path, shape: tuple[int, int], pred: np.ndarray) -> np.ndarray:
    return confusion(read_id_png(label_path, shape), pred)


def run_vip(extractor: FeatureExtractor, root: Path, out_dir: Path | None, settings: PropagationSettings,
            videos: Sequence[str] | None = None, list_file: Path | None = None, all_videos: bool = False) -> dict:
    """Propagate every video; one confusion matrix over all annotated frames (the first included,
    as the protocol outputs it: its ground truth, or its labels' round trip through the grid)."""
    hist = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    chosen = open_vip(root, videos, list_file, all_videos)
    with IoPool() as io:
        for video in progress(chosen, desc=f"vip {extractor.name}", unit="video"):
            first = read_id_png(video.labels[0])
            frames = io.read_frames(video.frames, read_frame).result()
            if frames.shape[1:3] != first.shape:
                raise UserError(f"{video.labels[0]}: size differs from its frame {video.frames[0]}")
            maps = propagate_ids(extractor, frames, first, N_CLASSES, settings, desc=video.name)
            counts = []                                     # confusion of each annotated frame, in the pool
            for frame, label_path, ids in zip(video.frames, video.labels, maps):
                if out_dir is not None:
                    io.write_ids(Path(out_dir) / video.name / f"{frame.stem}.png", ids)
                if label_path is not None:
                    counts.append(io.submit(ids, partial(_frame_confusion, label_path, first.shape)))
            hist += sum(c.result() for c in counts)
    mean, per_class = miou(hist)
    return {"features": extractor.name, "protocol": settings.protocol, "settings": settings.to_dict(),
            "videos": len(chosen), "mIoU": mean, "per_class": {name: float(v) for name, v in zip(CLASSES, per_class)}}
