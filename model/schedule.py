"""Learning rate: MAE's linear scaling (base lr x batch / 256), linear warmup, then a cosine to min_lr."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The MAE convention: the base lr is for a batch of 256 pairs; scale linearly with the batch."""
    return base_lr * batch_size / 256


def lr_at(step: int, peak_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0) -> float:
    """lr for optimizer step `step` (0-based): linear warmup to peak_lr, then half a cosine to min_lr."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LRSchedule:
    """The whole schedule as data, so a checkpoint records it and a resumed run can check it."""

    peak_lr: float
    total_steps: int
    warmup_steps: int
    min_lr: float = 0.0

    def __call__(self, step: int) -> float:
        return lr_at(step, self.peak_lr, self.total_steps, self.warmup_steps, self.min_lr)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices; none on biases, norms and the CLS/mask tokens."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith((".bias", "_token")):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
