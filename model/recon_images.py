"""Reconstruction figures: one row per pair with f1 | masked f2 | prediction | f2, as a uint8 image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.siammae import SiamMAE, SiamMAEOutput
from siammae_common.constants import IMAGENET_MEAN, IMAGENET_STD

MASKED_GREY = 0.5


def _to_pixels(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised [B, 3, H, W] -> [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


@torch.no_grad()
def reconstruction_grid(model: SiamMAE, f1: torch.Tensor, f2: torch.Tensor, out: SiamMAEOutput,
                        max_rows: int = 4, gap: int = 2) -> np.ndarray:
    """f1, f2 [B, 3, H, W] and the model's output on them -> [rows*(H+gap), 4*(W+gap), 3] uint8.

    The prediction column shows predicted pixels at the masked patches and f2's own pixels at the
    visible ones; with norm-pix targets the prediction is mapped back with each true patch's mean/std.
    """
    n = min(max_rows, f1.shape[0])
    f1, f2 = f1[:n].float(), f2[:n].float()
    pred, mask = out.pred[:n].float(), out.mask[:n].float()            # [n, N, P], [n, N]
    grid_h = f2.shape[-2] // model.cfg.patch_size

    target = model.patchify(f2)                                        # [n, N, P]
    if model.cfg.norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        pred = pred * std + mean
    m = mask.unsqueeze(-1)                                             # [n, N, 1]
    recon = model.unpatchify(pred * m + target * (1 - m), grid_h)
    pixel_mask = model.unpatchify(m.expand_as(target), grid_h)         # [n, 3, H, W], 1 = masked

    f2_px = _to_pixels(f2)
    columns = [_to_pixels(f1), f2_px * (1 - pixel_mask) + MASKED_GREY * pixel_mask, _to_pixels(recon), f2_px]
    H, W = f1.shape[-2:]
    canvas = torch.ones(n * (H + gap), 4 * (W + gap), 3)
    for r in range(n):
        for c, col in enumerate(columns):
            y, x = r * (H + gap), c * (W + gap)
            canvas[y:y + H, x:x + W] = col[r].permute(1, 2, 0).cpu()
    return (canvas * 255).round().to(torch.uint8).numpy()


def save_png(image: np.ndarray, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
