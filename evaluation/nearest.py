"""Nearest-neighbour resampling indices exactly as cv2 and PIL compute them (numpy only).

"nearest" = cv2 INTER_NEAREST: source floor(i · ifx) with ifx = 1 / (out / in).
"nearest-centre" = PIL NEAREST: the cell centre, xo = ½·a then xo += a per pixel (a = in / out, double
precision, accumulated as PIL does), truncated. Both were checked pixel for pixel against the libraries.
"""

from __future__ import annotations

import numpy as np

NEAREST_RULES: tuple[str, ...] = ("nearest", "nearest-centre")


def nearest_indices(n_out: int, n_in: int, rule: str) -> np.ndarray:
    """Source index of each of `n_out` output pixels along one axis of length `n_in` (int64 [n_out])."""
    if rule == "nearest":
        step = 1.0 / (n_out / n_in)
        index = np.floor(np.arange(n_out, dtype=np.float64) * step)
    elif rule == "nearest-centre":
        steps = np.full(n_out, n_in / n_out)
        steps[0] *= 0.5
        index = np.cumsum(steps)
    else:
        raise ValueError(f"unknown nearest rule {rule!r}: expected one of {', '.join(NEAREST_RULES)}")
    return np.clip(index.astype(np.int64), 0, n_in - 1)


def resize_ids(ids: np.ndarray, size: tuple[int, int], rule: str) -> np.ndarray:
    """Id maps [..., H, W] → [..., h, w] by nearest neighbour under `rule` (numpy)."""
    height, width = ids.shape[-2:]
    if (height, width) == tuple(size):
        return ids
    rows = nearest_indices(size[0], height, rule)
    cols = nearest_indices(size[1], width, rule)
    return ids[..., rows, :][..., cols]
