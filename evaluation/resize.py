"""The resizes around a propagation, on the device, as the reference implementations do them.

Frames: uint8 → float, bilinear (half-pixel, no antialias: cv2.resize), ImageNet-normalised.
Labels: annotation ids → the feature grid (one-hot, then bilinear or nearest); soft labels → the input
size (bilinear) → optional per-channel min-max (DINO's norm_mask) → argmax → the annotation's size.
Nearest rules (evaluation.nearest): "nearest" as cv2 INTER_NEAREST, "nearest-centre" as PIL NEAREST.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.nearest import nearest_indices
from evaluation.settings import PropagationSettings
from siammae_common.constants import IMAGENET_MEAN


@lru_cache(maxsize=64)
def _on_device(kind: str, n_out: int, n_in: int, option: str | bool, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Resampling tables, made once per size and device (no host-to-device copy per frame)."""
    if kind == "nearest":
        return (torch.from_numpy(nearest_indices(n_out, n_in, option)).to(device),)
    return tuple(torch.from_numpy(v).to(device) for v in _cv2_linear_taps(n_out, n_in, option))


def resize_nearest(x: torch.Tensor, size: tuple[int, int], rule: str) -> torch.Tensor:
    """[..., H, W] → [..., h, w] by nearest neighbour under `rule` (any dtype, any device)."""
    height, width = x.shape[-2:]
    if (height, width) == tuple(size):
        return x
    (rows,) = _on_device("nearest", size[0], height, rule, x.device)
    (cols,) = _on_device("nearest", size[1], width, rule, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _cv2_linear_taps(n_out: int, n_in: int, clamp_source: bool) -> tuple[np.ndarray, ...]:
    """cv2's INTER_LINEAR taps along one axis: source indices (i0, i1) and 11-bit weights (w0, w1).

    Columns outside the image are moved onto the edge with weight (1, 0); rows keep their weights and
    read the clamped edge row twice (OpenCV's horizontal and vertical passes differ in just this way).
    """
    pos = ((np.arange(n_out) + 0.5) * (1.0 / (n_out / n_in)) - 0.5).astype(np.float32)
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    if clamp_source:
        low, high = i0 < 0, i0 >= n_in - 1
        frac[low | high] = 0.0
        i0 = np.clip(i0, 0, n_in - 1)
    w0 = np.round((np.float32(1.0) - frac) * 2048).astype(np.int64)
    w1 = np.round(frac * 2048).astype(np.int64)
    return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), w0, w1


def resize_uint8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images [..., H, W] → [..., h, w] exactly as cv2.resize(INTER_LINEAR) on 8-bit images:
    fixed-point weights, an integer horizontal pass, then cv2's shift-and-round vertical pass."""
    height, width = x.shape[-2:]
    cx0, cx1, a0, a1 = _on_device("linear", size[1], width, True, x.device)
    ry0, ry1, b0, b1 = _on_device("linear", size[0], height, False, x.device)
    xi = x.to(torch.int32)
    rows = (xi.index_select(-1, cx0) * a0.int() + xi.index_select(-1, cx1) * a1.int()) >> 4   # [..., H, w]
    top = (rows.index_select(-2, ry0) * b0.int()[:, None]) >> 16
    bottom = (rows.index_select(-2, ry1) * b1.int()[:, None]) >> 16
    return ((top + bottom + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def to_input(frames: torch.Tensor, size: tuple[int, int], settings: PropagationSettings) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] (on the device) → normalised float [T, 3, h, w] at `size`.

    CropMAE resizes the [0, 1] float image (bilinear); DINO (resize_uint8) resizes the 8-bit image with
    cv2, reproduced here bit for bit.
    """
    x = frames.permute(0, 3, 1, 2)                                               # [T, 3, H, W] uint8
    resize = tuple(x.shape[-2:]) != tuple(size)
    if resize and settings.resize_uint8:
        x = resize_uint8(x, size).float() / 255.0
    else:
        x = x.float() / 255.0
        if resize:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(settings.input_std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def one_hot(ids: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Integer ids [H, W] → float one-hot [C, H, W]; ids ≥ n_classes get an all-zero column."""
    ids = ids.long()
    valid = ids < n_classes
    out = F.one_hot(torch.where(valid, ids, 0), n_classes).permute(2, 0, 1).float()
    return out * valid


def downsample_labels(labels: torch.Tensor, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """Soft labels [C, H, W] → [C, h, w] on the feature grid (bilinear without antialias, as cv2.resize)."""
    if mode == "area":
        return F.adaptive_avg_pool2d(labels[None].float(), grid)[0]
    if mode in ("nearest", "nearest-centre"):
        return resize_nearest(labels.float(), grid, mode)
    if mode == "bilinear":
        return F.interpolate(labels[None].float(), size=grid, mode="bilinear", align_corners=False)[0]
    raise ValueError(f"unknown label_downsample {mode!r} (bilinear, nearest, nearest-centre or area)")


def labels_to_grid(ids: torch.Tensor, n_classes: int, input_size: tuple[int, int], grid: tuple[int, int],
                   settings: PropagationSettings) -> torch.Tensor:
    """First-frame ids [H, W] (annotation size) → soft labels [C, h, w] on the feature grid.

    cropmae: ids resized ("nearest") to the input size, one-hot, bilinear to the grid (CRW's loader);
    dino: ids sampled straight from the annotation to the grid (nearest-centre), one-hot.
    """
    if settings.labels_at_input_size:
        ids = resize_nearest(ids, input_size, "nearest")
    if settings.label_downsample in ("nearest", "nearest-centre"):
        return one_hot(resize_nearest(ids, grid, settings.label_downsample), n_classes)
    return downsample_labels(one_hot(ids, n_classes), grid, settings.label_downsample)


def norm_mask(labels: torch.Tensor) -> torch.Tensor:
    """DINO's norm_mask: each channel [C, H, W] with a positive maximum → (x − min) / max(x − min)."""
    low = labels.amin(dim=(1, 2), keepdim=True)
    high = labels.amax(dim=(1, 2), keepdim=True)
    shifted = labels - low
    scaled = shifted / shifted.amax(dim=(1, 2), keepdim=True)
    return torch.where(high > 0, scaled, labels)


def soft_to_ids(labels: torch.Tensor, input_size: tuple[int, int], out_size: tuple[int, int],
                settings: PropagationSettings) -> torch.Tensor:
    """Soft labels [C, h, w] → bilinear to the input size → (norm_mask) → argmax → uint8 ids at `out_size`."""
    up = F.interpolate(labels[None].float(), size=input_size, mode="bilinear", align_corners=False)[0]
    if settings.norm_mask:
        up = norm_mask(up)
    ids = torch.max(up, dim=0).indices.to(torch.uint8)                              # [H_in, W_in]
    return resize_nearest(ids, out_size, settings.output_resize)
