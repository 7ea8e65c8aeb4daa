"""The files every benchmark reads and writes: RGB frames and palette PNGs of object ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from siammae_common.atomic import atomic_write
from siammae_common.console import UserError


def pascal_palette(n: int = 256) -> list[int]:
    """The Pascal-VOC colour map used by DAVIS annotations (id k → its bit-interleaved RGB), flat [3n]."""
    palette = []
    for index in range(n):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


PALETTE = pascal_palette()


def read_id_png(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """An id map [H, W] uint8 from a single-channel PNG (palette 'P' or grayscale 'L'); checks the size."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing")
    try:
        with Image.open(path) as image:
            mode = image.mode
            ids = np.array(image)
    except OSError as err:
        raise UserError(f"{path}: not a readable PNG ({err})") from err
    if mode not in ("P", "L"):
        raise UserError(f"{path}: a {mode} image; expected a single-channel indexed (palette) PNG of object ids")
    if shape is not None and ids.shape != tuple(shape):
        raise UserError(f"{path}: size {ids.shape[1]}x{ids.shape[0]}, expected {shape[1]}x{shape[0]} "
                        "(the annotation's size)")
    return ids


def write_id_png(path: Path, ids: np.ndarray) -> None:
    """Write an id map [H, W] as a palette PNG (atomically: temp file, then rename)."""
    image = Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="P")
    image.putpalette(PALETTE)
    with atomic_write(path) as f:
        image.save(f, format="PNG")


def read_frame(path: Path) -> np.ndarray:
    """An RGB frame [H, W, 3] uint8."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except OSError as err:
        raise UserError(f"{path}: not a readable image ({err})") from err
