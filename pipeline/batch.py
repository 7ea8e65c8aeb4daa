"""What every loader yields (PairBatch) and how a decoded batch becomes training input on the device.

Nothing here builds a tensor per batch: the mean and 1/std a loader normalises with are made once per
loader and device (`FrameFinisher`), because `torch.tensor(..., device="cuda")` is a blocking
host-to-device copy that would make the loader wait for the training step before it.
"""

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


def normalize_uint8(frames: torch.Tensor, dtype: torch.dtype, mean: torch.Tensor, inv_std: torch.Tensor
                    ) -> torch.Tensor:
    """uint8 [B, 3, H, W] (0..255) -> ImageNet-normalised `dtype`: (x - mean) * inv_std, where mean and
    inv_std are [1, 3, 1, 1] float32 on the frames' device in 0..255 units (see `imagenet_constants`)."""
    out = frames.to(torch.float32)
    out.sub_(mean).mul_(inv_std)                         # in place: one float buffer per batch
    return out if dtype == torch.float32 else out.to(dtype)


def imagenet_constants(device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1 / std) in 0..255 units as [1, 3, 1, 1] float32 on `device` (built once per loader)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
    return mean.to(device), inv_std.to(device)


class FrameFinisher:
    """Brings decoded batches to a loader's device and output dtype, normalising uint8 input when asked.

    Built once per loader: the constants are moved to the device here, never per batch.
    """

    def __init__(self, device: str, dtype: str, normalize: bool) -> None:
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[dtype]
        self.normalize = normalize
        self.mean, self.inv_std = imagenet_constants(self.device) if normalize else (None, None)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] on any device -> [B, 3, H, W] on self.device in self.dtype.

        A pinned CPU batch crosses to the GPU asynchronously; the normalisation then runs there.
        """
        frames = frames.to(self.device, non_blocking=True)
        if self.normalize:
            return normalize_uint8(frames, self.dtype, self.mean, self.inv_std)
        return frames if frames.dtype == self.dtype else frames.to(self.dtype)
