"""CPU versions of the pair augmentation (crop window + resize + flip), for the fallback loader and the
benchmark's reference loaders. Frames are decoded by Pillow (whose judgement of damaged frames is the
fallback's, see pipeline.bad_frames). Output is uint8; normalisation happens on the device.

Two resizes: `crop_resize_flip_linear` is the DALI graph's (linear interpolation, no antialiasing, the
default `PairSamplingConfig.antialias=False`), done by OpenCV at a fifth of Pillow's cost; the Pillow
ones (bilinear, antialiased when reducing) serve `antialias=True` and the benchmark's plain Pillow loader.
"""

from __future__ import annotations

import io

import cv2
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


def crop_resize_flip_linear(img: Image.Image, crop: np.ndarray, flip: bool, size: int) -> np.ndarray:
    """As the DALI graph does it: crop (y, x, h, w) -> size x size, linear without antialiasing ->
    optional flip; [S, S, 3] uint8 (a view when flipped)."""
    y, x, h, w = (int(v) for v in crop)
    out = cv2.resize(np.asarray(img)[y:y + h, x:x + w], (size, size), interpolation=cv2.INTER_LINEAR)
    return out[:, ::-1] if flip else out


def crop_resize_flip(img: Image.Image, crop: np.ndarray, flip: bool, size: int) -> torch.Tensor:
    """`crop_resize_flip_array` as a [3, S, S] uint8 tensor."""
    return torch.from_numpy(crop_resize_flip_array(img, crop, flip, size)).permute(2, 0, 1).contiguous()


def augment_pair(img1: Image.Image, img2: Image.Image, crop: np.ndarray, flip: bool,
                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same crop and flip applied to both frames."""
    return crop_resize_flip(img1, crop, flip, size), crop_resize_flip(img2, crop, flip, size)
