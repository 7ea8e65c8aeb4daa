"""What a training step changes and a checkpoint keeps: one object per rank, handed whole to the step,
the logger and the checkpoint code (as MAE's engine gets its model, optimizer and scaler)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from model.schedule import LRSchedule, scaled_lr
from model.siammae import SiamMAE
from model.train_config import TrainConfig


@dataclass
class TrainState:
    """One rank's training state."""

    model: SiamMAE                 # the bare network (what checkpoints hold)
    net: torch.nn.Module           # the network as the step runs it (DDP and/or torch.compile around model)
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    mask_rng: torch.Generator      # the masks' random stream (saved with every checkpoint)
    bad_frames: Any                # the loader's pipeline.bad_frames.BadFrameLedger
    step: int = 0                  # optimizer steps done
    # index of the first step whose loss was not finite, -1 if none; kept on the device (no host sync)
    first_bad_step: torch.Tensor | None = None
    data: dict[str, Any] = field(default_factory=dict)         # the shard set's fingerprint (model.run_fingerprint)
    history: list[dict[str, Any]] = field(default_factory=list)  # the run's resumes, as config.json lists them

    @property
    def device(self) -> torch.device:
        return self.mask_rng.device


def make_schedule(cfg: TrainConfig, steps_per_epoch: int) -> LRSchedule:
    """Warmup then cosine over the run: --max-steps or --epochs long, peak --lr or --blr x batch / 256."""
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * steps_per_epoch)
    peak = cfg.lr if cfg.lr is not None else scaled_lr(cfg.blr, cfg.batch_size)
    return LRSchedule(peak_lr=peak, total_steps=total, warmup_steps=min(warmup, total), min_lr=cfg.min_lr)
