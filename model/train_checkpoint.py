"""What a training checkpoint holds and how a run continues from one (`--resume`, `--resume-from`).

Every checkpoint, latest.pt and each kept epoch_NNNN.pt, holds the model, optimizer, step, schedule,
configs, every rank's random streams and every rank's bad-frame ledger, as tensors and plain
containers (see model.checkpoint), so a run continues exactly from any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model import distributed as dist
from model.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    model_state_dict,
    restore_rng,
    save_checkpoint,
)
from model.config import ModelConfig
from model.run_folder import kept_checkpoints
from model.schedule import LRSchedule
from model.siammae import SiamMAE
from model.train_config import TrainConfig
from siammae_common.console import UserError, info, warn

RESUME_KEYS = ("optimizer", "step", "rng")      # what a checkpoint needs besides the model to be resumed


@dataclass
class Trainee:
    """The objects a checkpoint captures and restores (one rank's view)."""

    model: SiamMAE
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    mask_rng: torch.Generator
    bad_frames: Any                # the loader's pipeline.bad_frames.BadFrameLedger


def checkpoint_state(cfg: TrainConfig, model_cfg: ModelConfig, where: dist.DistInfo, t: Trainee,
                     step: int) -> dict[str, Any] | None:
    """The checkpoint dict on rank 0 (None elsewhere); a collective: every rank must call it."""
    per_rank = dist.all_gather_objects({"rng": {**capture_rng(), "mask": t.mask_rng.get_state().cpu()},
                                        "bad_frames": t.bad_frames.state_dict()})
    if not where.is_main:
        return None
    return {"model": model_state_dict(t.model), "model_config": model_cfg.to_dict(),
            "optimizer": t.optimizer.state_dict(), "step": step, "schedule": vars(t.schedule).copy(),
            "train_config": cfg.to_dict(), "world_size": where.world_size,
            "rng": [r["rng"] for r in per_rank], "bad_frames": [r["bad_frames"] for r in per_rank]}


def save(cfg: TrainConfig, model_cfg: ModelConfig, where: dist.DistInfo, t: Trainee, step: int,
         keep_as: str | None) -> None:
    """Update checkpoints/latest.pt (and keep the same state as `keep_as`); every rank must call this."""
    ckpt = checkpoint_state(cfg, model_cfg, where, t, step)
    if ckpt is not None:
        save_checkpoint(cfg.latest_checkpoint, ckpt)
        if keep_as is not None:
            save_checkpoint(cfg.latest_checkpoint.with_name(keep_as), ckpt)
    dist.barrier()


def _load(path: Path, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    try:
        return load_checkpoint(path, map_location=device)
    except CheckpointError as e:
        kept = [p for p in kept_checkpoints(cfg.out) if p != path]
        hint = f"; resume from a kept one with --resume-from {kept[-1]}" if kept and path == cfg.latest_checkpoint \
            else ""
        raise UserError(f"{e}{hint}") from None


def resume(path: Path, cfg: TrainConfig, model_cfg: ModelConfig, where: dist.DistInfo, device: torch.device,
           t: Trainee) -> int:
    """Restore everything from the checkpoint at `path`; returns its step."""
    ckpt = _load(path, cfg, device)
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise UserError(f"{path}: holds no {', '.join(missing)} (weights only, from an older siammae): it can "
                        "be evaluated but not resumed from")
    saved_cfg = ModelConfig.from_dict(ckpt["model_config"])
    if saved_cfg != model_cfg:
        raise UserError(f"{path} holds a different model ({saved_cfg}); use the same model options or another --out")
    t.model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("schedule") != vars(t.schedule) and where.is_main:
        warn(f"resume: the lr schedule changed from {ckpt.get('schedule')} to {vars(t.schedule)}")
    rng, ledgers = ckpt.get("rng") or [], ckpt.get("bad_frames") or []
    if len(rng) == where.world_size:
        restore_rng(rng[where.rank])
        t.mask_rng.set_state(rng[where.rank]["mask"].cpu())
    elif where.is_main:
        warn(f"resume: checkpoint written by {len(rng)} processes, now {where.world_size}; "
             "random streams restart from the seed")
    if len(ledgers) == where.world_size:
        t.bad_frames.load_state_dict(ledgers[where.rank])
    else:                          # another world size: every rank still skips every known bad frame
        for ledger in ledgers:
            t.bad_frames.load_state_dict({"frames": ledger.get("frames", [])})
    step = int(ckpt["step"])
    if where.is_main:
        info(f"resumed from {path} at step {step}")
    return step
