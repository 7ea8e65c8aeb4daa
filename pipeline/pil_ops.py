"""Pillow versions of the pair augmentation (crop window + resize + flip), for the fallback loader and
the benchmark's reference loaders. Output is uint8 CHW; normalisation happens on the device."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def decode_jpeg(data: bytes | np.ndarray) -> Image.Image:
    """The decoded frame in RGB (decoded here, so that a damaged frame fails here)."""
    img = Image.open(io.BytesIO(bytes(data) if isinstance(data, np.ndarray) else data))
    if img.mode == "RGB":
        img.load()                  # an RGB JPEG needs no conversion (convert would copy the frame)
        return img
    return img.convert("RGB")


def crop_resize_flip_array(img: Image.Image, crop: np.ndarray, flip: bool, size: int) -> np.ndarray:
    """One pair member: crop (y, x, h, w) -> size x size (bilinear) -> optional flip; [S, S, 3] uint8."""
    y, x, h, w = (int(v) for v in crop)
    img = img.resize((size, size), Image.BILINEAR, box=(x, y, x + w, y + h))
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img)


def crop_resize_flip(img: Image.Image, crop: np.ndarray, flip: bool, size: int) -> torch.Tensor:
    """`crop_resize_flip_array` as a [3, S, S] uint8 tensor."""
    return torch.from_numpy(crop_resize_flip_array(img, crop, flip, size)).permute(2, 0, 1).contiguous()


def augment_pair(img1: Image.Image, img2: Image.Image, crop: np.ndarray, flip: bool,
                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same crop and flip applied to both frames."""
    return crop_resize_flip(img1, crop, flip, size), crop_resize_flip(img2, crop, flip, size)
