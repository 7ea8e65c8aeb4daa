"""Checkpoints: written atomically (temp file + os.replace), loadable as a bare model for evaluation.

A checkpoint is a dict: model (state dict), model_config (dict), and for training runs optimizer,
step, epoch, schedule, train_config, rng (one entry per rank), format version.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.config import ModelConfig
from model.siammae import SiamMAE

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"version": CHECKPOINT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ValueError(f"{path}: not a siammae checkpoint (no model / model_config)")
    return state


def model_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The bare SiamMAE's weights, whether `model` is wrapped in DDP and/or torch.compile or not."""
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.state_dict()


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SiamMAE, ModelConfig]:
    """The trained network and its config, in eval mode, on `map_location`."""
    state = load_checkpoint(path, map_location)
    cfg = ModelConfig.from_dict(state["model_config"])
    model = SiamMAE(cfg)
    model.load_state_dict(state["model"])
    return model.to(map_location).eval(), cfg


def capture_rng() -> dict[str, Any]:
    """This process's random state: python, numpy, torch CPU and (if present) the current CUDA device."""
    rng: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                           "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"].cpu())
