"""Patch-feature extractors for label propagation: a trained checkpoint, a random-init encoder, raw pixels.

Each maps ImageNet-normalised frames [B, 3, H, W] (H, W divisible by `patch_size`) to patch features
[B, H/p, W/p, D]; propagation L2-normalises them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from siammae_common.console import UserError


class FeatureExtractor(Protocol):
    """frames [B, 3, H, W] → features [B, H/p, W/p, D]."""

    name: str
    patch_size: int

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


class EncoderFeatures:
    """The SiamMAE encoder's final-LayerNorm patch tokens (no CLS), position embeddings interpolated."""

    def __init__(self, model: torch.nn.Module, patch_size: int, name: str, device: str = "cpu",
                 config: object | None = None) -> None:
        self.model = model.eval().to(device)
        self.patch_size = patch_size
        self.name = name
        self.config = config

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode(frames)


class PixelFeatures:
    """Raw-pixel baseline: each patch's normalised RGB values flattened (D = 3·p²), or averaged (D = 3)."""

    def __init__(self, patch_size: int = 16, mode: str = "flatten") -> None:
        if mode not in ("flatten", "mean"):
            raise ValueError(f"pixel feature mode {mode!r}: expected 'flatten' or 'mean'")
        self.patch_size = patch_size
        self.mode = mode
        self.name = f"pixels-{mode}"

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        b, c, h, w = frames.shape
        patches = frames.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # [B, h, w, C, p, p]
        if self.mode == "mean":
            return patches.mean(dim=(-2, -1))                                            # [B, h, w, 3]
        return patches.reshape(b, h // p, w // p, c * p * p)                             # [B, h, w, 3p²]


def _patch_size(cfg: object) -> int:
    for attr in ("patch_size", "patch"):
        if hasattr(cfg, attr):
            return int(getattr(cfg, attr))
    raise TypeError(f"model config {type(cfg).__name__} has no patch_size")


def checkpoint_features(path: Path, device: str = "cpu") -> EncoderFeatures:
    """The encoder of a trained checkpoint (model.checkpoint.load_model)."""
    from model.checkpoint import model_for_command

    model, cfg = model_for_command(Path(path), map_location="cpu")
    return EncoderFeatures(model, _patch_size(cfg), name="trained", device=device, config=cfg)


def random_init_features(model_name: str | None = None, seed: int = 0, device: str = "cpu",
                         config: object | None = None) -> EncoderFeatures:
    """An untrained SiamMAE encoder, initialised from `seed` (config given, or model_config(model_name))."""
    from model.config import model_config
    from model.siammae import SiamMAE

    if config is None:
        if model_name is None:
            raise ValueError("random_init_features needs a model name or a config")
        try:
            config = model_config(model_name)
        except (KeyError, ValueError) as err:
            raise UserError(f"unknown model name {model_name!r} ({err})") from err
    torch.manual_seed(seed)
    return EncoderFeatures(SiamMAE(config), _patch_size(config), name="random_init", device=device, config=config)
