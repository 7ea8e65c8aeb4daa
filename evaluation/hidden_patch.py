"""What SiamMAE itself learns: its error on the hidden patches of f2 in held-out frame pairs, beside two
predictors that need no training: copying f1's patch at the same place ("nothing moves") and
predicting each patch's mean (zero in normalised pixels, an error of about 1.0).

Errors are mean squared errors against the targets SiamMAE trains on (`SiamMAE.patch_targets`:
per-patch normalised pixels with `norm_pix_loss`, the default; raw pixels without it, where predicting
the mean scores each patch's variance instead), over the same hidden patches for all three predictors. A model that learned where
f2's content was in f1 beats copying f1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from evaluation.dataset_io import read_frame
from evaluation.davis_io import open_davis
from model.masking import random_masking
from model.siammae import SiamMAE
from siammae_common.constants import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class PairSpec:
    """How held-out pairs are cut from a DAVIS-layout folder: like the training pairs, from other clips."""

    crop: int                          # side of the square crop, in pixels of the frame (0: the short side)
    size: int                          # the model's input size (the crop is resized to size x size)
    gap_range: tuple[int, int]         # frame gap f1 -> f2, inclusive (clamped to the sequence)
    pairs_per_sequence: int = 8
    seed: int = 0


@dataclass(frozen=True)
class HiddenPatchErrors:
    """Mean squared error on f2's hidden patches (normalised pixels) of the three predictors."""

    trained: float
    copy_f1: float
    mean: float
    pairs: int
    patches: int                       # hidden patches scored, all pairs together

    def to_dict(self) -> dict:
        return asdict(self)


def held_out_pairs(davis_root, spec: PairSpec, subset: str = "val") -> tuple[torch.Tensor, torch.Tensor]:
    """(f1, f2), each [N, 3, size, size], ImageNet-normalised: `pairs_per_sequence` pairs of every sequence,
    each a random gap and one random square crop shared by both frames (the same spec gives the same pairs)."""
    rng = np.random.default_rng(spec.seed)
    firsts, seconds = [], []
    for seq in open_davis(davis_root, subset):
        n = len(seq.frames)
        for _ in range(spec.pairs_per_sequence):
            gap = int(rng.integers(min(spec.gap_range[0], n - 1), min(spec.gap_range[1], n - 1) + 1))
            t = int(rng.integers(0, n - gap))
            f1, f2 = read_frame(seq.frames[t]), read_frame(seq.frames[t + gap])        # [H, W, 3] uint8
            side = min(spec.crop or 10**9, *f1.shape[:2])
            top = int(rng.integers(0, f1.shape[0] - side + 1))
            left = int(rng.integers(0, f1.shape[1] - side + 1))
            firsts.append(f1[top:top + side, left:left + side])
            seconds.append(f2[top:top + side, left:left + side])
    return _to_input(firsts, spec.size), _to_input(seconds, spec.size)


def _to_input(crops: list[np.ndarray], size: int) -> torch.Tensor:
    """Square uint8 crops [h, h, 3] -> [N, 3, size, size], resized (antialiased) and normalised as the loader."""
    out = []
    for crop in crops:
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255   # [1, 3, h, h]
        out.append(torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True))
    x = torch.cat(out)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def hidden_patch_errors(model: SiamMAE, f1: torch.Tensor, f2: torch.Tensor, seed: int = 0,
                        batch_size: int = 64) -> HiddenPatchErrors:
    """Errors of the model, of copying f1 and of predicting the mean on the patches of f2 that the model's
    mask (its own mask ratio, drawn from `seed`) hides. f1, f2: [N, 3, S, S] at the model's input size."""
    model = model.eval()
    generator = torch.Generator().manual_seed(seed)
    n_patches = (f2.shape[-2] // model.cfg.patch_size) * (f2.shape[-1] // model.cfg.patch_size)
    sums = {"trained": 0.0, "copy_f1": 0.0, "mean": 0.0}
    hidden = 0.0
    for start in range(0, f1.shape[0], batch_size):
        a, b = f1[start:start + batch_size], f2[start:start + batch_size]
        masking = random_masking(a.shape[0], n_patches, model.cfg.mask_ratio, "cpu", generator)
        pred = model(a, b, masking=masking).pred                                     # [B, L, P]
        target = model.patch_targets(b)                                              # [B, L, P]
        guesses = {"trained": pred, "copy_f1": model.patch_targets(a),
                   "mean": target.mean(-1, keepdim=True).expand_as(target)}
        for name, guess in guesses.items():
            sums[name] += float((((guess - target) ** 2).mean(-1) * masking.mask).sum())
        hidden += float(masking.mask.sum())
    return HiddenPatchErrors(**{k: v / hidden for k, v in sums.items()}, pairs=int(f1.shape[0]),
                             patches=int(hidden))
