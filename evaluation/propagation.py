"""Label propagation with frozen patch features: the one implementation behind DAVIS, JHMDB and VIP.

Each target frame's labels are a weighted sum of context labels: context = the first frame (ground truth)
+ the last `queue` frames (their predicted soft labels); weights = softmax(top-k cosine affinities / T),
restricted to a local window around each target patch (CRW / CropMAE lineage, see research/evaluation.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.features import FeatureExtractor
from siammae_common.console import progress
from siammae_common.constants import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class PropagationSettings:
    """Everything that changes a propagation result; recorded beside every metric."""

    queue: int = 20                 # previous frames kept as context (plus the first frame, always)
    radius: float = 20.0            # local window, in patches
    window: str = "circle"          # "circle": distance < radius (CRW/CropMAE); "square": |Δ| ≤ radius (DINO)
    window_on_first_frame: bool = False  # CRW/CropMAE leave the first frame unrestricted; DINO restricts it
    topk: int = 7                   # affinities kept per target patch, over all context frames jointly
    temperature: float = 0.7        # softmax(top-k cosine / temperature)
    label_downsample: str = "bilinear"  # first-frame one-hot → feature grid: bilinear | nearest | area
    short_side: int | None = 480    # input resize: short side to this (None: native size) ...
    long_side: int | None = None    # ... or long side to this (VIP) ...
    fixed_size: tuple[int, int] | None = None  # ... or exactly (H, W) (JHMDB 320x320)
    size_multiple: int = 64         # the other side(s) floored to a multiple of this (DINO: 64)
    batch_size: int = 8             # frames per encoder call
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


def eval_size(height: int, width: int, settings: PropagationSettings, patch: int) -> tuple[int, int]:
    """The encoder's input size (H, W) for a frame of `height × width`; both divisible by `patch`."""
    multiple = max(patch, settings.size_multiple // patch * patch)

    def floor(x: float) -> int:
        return max(multiple, int(x // multiple) * multiple)

    if settings.fixed_size is not None:
        h, w = settings.fixed_size
        if h % patch or w % patch:
            raise ValueError(f"fixed_size {h}x{w} is not divisible by the patch size {patch}")
        return h, w
    if settings.long_side is not None:
        scale = settings.long_side / max(height, width)
        return (settings.long_side, floor(width * scale)) if height >= width else \
            (floor(height * scale), settings.long_side)
    if settings.short_side is None:
        return floor(height), floor(width)
    scale = settings.short_side / min(height, width)
    short = settings.short_side // patch * patch
    return (short, floor(width * scale)) if height <= width else (floor(height * scale), short)


def to_input(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] → ImageNet-normalised float [T, 3, h, w] at `size` (bilinear, no antialias)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.inference_mode()
def extract_features(extractor: FeatureExtractor, frames: np.ndarray, settings: PropagationSettings,
                     desc: str = "") -> torch.Tensor:
    """L2-normalised patch features [T, h, w, D] of uint8 frames [T, H, W, 3], on settings.device."""
    size = eval_size(frames.shape[1], frames.shape[2], settings, extractor.patch_size)
    out = []
    starts = range(0, len(frames), settings.batch_size)
    for start in progress(starts, desc=f"encode {desc}".strip(), unit="batch"):
        batch = to_input(frames[start:start + settings.batch_size], size).to(settings.device)
        out.append(F.normalize(extractor(batch).float(), dim=-1))
    return torch.cat(out)


def window_mask(h: int, w: int, settings: PropagationSettings, device: torch.device | str) -> torch.Tensor:
    """Allowed (target, source) pairs on an h × w grid: bool [h·w, h·w]."""
    ii, jj = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    di = ii.reshape(-1, 1) - ii.reshape(1, -1)
    dj = jj.reshape(-1, 1) - jj.reshape(1, -1)
    if settings.window == "circle":
        return (di**2 + dj**2).float() < settings.radius**2
    if settings.window == "square":
        return (di.abs() <= settings.radius) & (dj.abs() <= settings.radius)
    raise ValueError(f"unknown window shape {settings.window!r} (circle or square)")


def downsample_labels(labels: torch.Tensor, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """Soft labels [C, H, W] → [C, h, w] on the feature grid (bilinear without antialias, as cv2.resize)."""
    x = labels[None].float()
    if mode == "area":
        return F.adaptive_avg_pool2d(x, grid)[0]
    if mode == "nearest":
        return F.interpolate(x, size=grid, mode="nearest")[0]
    if mode == "bilinear":
        return F.interpolate(x, size=grid, mode="bilinear", align_corners=False)[0]
    raise ValueError(f"unknown label_downsample {mode!r} (bilinear, nearest or area)")


@torch.inference_mode()
def propagate(features: torch.Tensor, first_labels: torch.Tensor,
              settings: PropagationSettings) -> Iterator[torch.Tensor]:
    """Soft labels [C, h, w] of frames 1..T-1, one per step.

    features: L2-normalised [T, h, w, D]; first_labels: frame 0's labels [C, h, w] on the same grid.
    """
    n_frames, h, w, dim = features.shape
    hw = h * w
    feats = features.reshape(n_frames, hw, dim)
    n_classes = first_labels.shape[0]
    # Every frame's labels stay in one buffer, so the queue is a view of frames lo..t-1 (no copies).
    labels = torch.empty(n_frames, hw, n_classes, device=feats.device)
    labels[0] = first_labels.to(feats.device, torch.float32).reshape(n_classes, hw).T
    outside = ~window_mask(h, w, settings, feats.device)[:, None, :]                   # [hw, 1, hw]
    for t in range(1, n_frames):
        lo = max(1, t - settings.queue)
        aff_first = feats[t] @ feats[0].T                                               # [hw, hw]
        aff_queue = feats[t] @ feats[lo:t].reshape(-1, dim).T                           # [hw, (t-lo)·hw]
        if settings.window_on_first_frame:
            aff_first = aff_first.masked_fill(outside[:, 0], -math.inf)
        aff_queue = aff_queue.view(hw, t - lo, hw).masked_fill_(outside, -math.inf).view(hw, -1)
        aff = torch.cat([aff_first, aff_queue], dim=1)                                  # [hw, N·hw]
        values, index = aff.topk(min(settings.topk, aff.shape[1]), dim=1)                # [hw, k]
        weights = torch.softmax(values / settings.temperature, dim=1)
        context = torch.cat([labels[0], labels[lo:t].reshape(-1, n_classes)])           # [N·hw, C]
        labels[t] = torch.einsum("qk,qkc->qc", weights, context[index])                 # [hw, C]
        yield labels[t].T.reshape(n_classes, h, w)


def upsample_argmax(labels: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Soft labels [C, h, w] → bilinear to `size` (H, W) → argmax → uint8 ids [H, W]."""
    up = F.interpolate(labels[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return up.argmax(0).to(torch.uint8).cpu().numpy()
