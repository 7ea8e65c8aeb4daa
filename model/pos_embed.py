"""Fixed 2-D sine-cosine position embeddings (MAE), on any grid, at integer or interpolated positions."""

from __future__ import annotations

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[M] positions -> [M, dim]: half sines, half cosines at geometric frequencies (dim even)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega                                         # [dim/2]
    angles = positions.to(torch.float64)[:, None] * omega[None, :]       # [M, dim/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int, base_grid: int | None = None,
              cls_token: bool = True) -> torch.Tensor:
    """Position embedding for a grid_h x grid_w patch grid -> [1, (1 +) grid_h * grid_w, dim] float32.

    Half the channels encode the row, half the column (dim divisible by 4). With `base_grid` set and
    the grid different from it, positions are the base grid's coordinates resampled to the new grid
    (what bilinear interpolation of the base embedding does with align_corners=False), evaluated
    exactly: a model trained at 14x14 sees the same range of positions at 30x54. The CLS token's
    embedding is zero, as in MAE.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    rows = _coords(grid_h, base_grid)
    cols = _coords(grid_w, base_grid)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")            # [h, w] each
    emb = torch.cat([sincos_1d(dim // 2, grid_r.reshape(-1)),
                     sincos_1d(dim // 2, grid_c.reshape(-1))], dim=1)      # [h*w, dim]
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().unsqueeze(0)


def _coords(n: int, base: int | None) -> torch.Tensor:
    if base is None or base == n:
        return torch.arange(n, dtype=torch.float64)
    # pixel-centre resampling: output i covers base coordinate (i + 0.5) * base / n - 0.5
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) * (base / n) - 0.5
    return coords.clamp(0, base - 1)
