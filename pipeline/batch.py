"""What every loader yields (PairBatch) and the one normalisation both loaders share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from siammae_common.constants import IMAGENET_MEAN, IMAGENET_STD

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "uint8": torch.uint8}


@dataclass
class PairBatch:
    """Two frames of the same clips, same crop and flip per pair.

    f1, f2: [B, 3, H, W] on the loader's device; normalised with the ImageNet mean/std unless the
    loader's dtype is uint8 (then raw RGB 0..255). index: per pair (clip key, i, j) when the loader
    was built with debug_indices, else None.
    """

    f1: torch.Tensor
    f2: torch.Tensor
    index: list[tuple[str, int, int]] | None = None

    def __len__(self) -> int:
        return self.f1.shape[0]


def normalize_uint8(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [B, 3, H, W] (0..255) -> ImageNet-normalised `dtype`, computed on the tensor's device."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=frames.device).view(1, 3, 1, 1) * 255.0)
    return ((frames.float() - mean) * inv_std).to(dtype)


def finish_frames(frames: torch.Tensor, *, device: str, dtype: str, normalize: bool) -> torch.Tensor:
    """Move a decoded batch to `device` and bring it to the loader's output dtype."""
    frames = frames.to(device, non_blocking=True)
    target = TORCH_DTYPES[dtype]
    if normalize:
        return normalize_uint8(frames, target)
    return frames if frames.dtype == target else frames.to(target)
