"""MAE-style random patch masking: a per-sample random shuffle keeps round(N * (1 - ratio)) patches."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Masking(NamedTuple):
    ids_keep: torch.Tensor      # [B, K] indices of the visible patches, in shuffled order
    ids_restore: torch.Tensor   # [B, N] position of each patch in the shuffled order
    mask: torch.Tensor          # [B, N] 1 = masked (hidden from the encoder), 0 = visible


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """Patches left visible: round(N * (1 - ratio)), at least 1."""
    return max(1, round(num_patches * (1.0 - mask_ratio)))


def random_masking(batch: int, num_patches: int, mask_ratio: float, device: torch.device | str,
                   generator: torch.Generator | None = None) -> Masking:
    """Draw an independent random mask per sample (uses torch's RNG, or `generator`)."""
    keep = num_visible(num_patches, mask_ratio)
    noise = torch.rand(batch, num_patches, device=device, generator=generator)   # [B, N]
    ids_shuffle = torch.argsort(noise, dim=1)          # ascending: the smallest `keep` stay visible
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)          # back to patch order
    return Masking(ids_shuffle[:, :keep], ids_restore, mask)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], ids [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
