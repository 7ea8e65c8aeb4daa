"""What a training checkpoint holds and how a run continues from one (`--resume`, `--resume-from`).

Every checkpoint, latest.pt and each kept epoch_NNNN.pt, holds the model, optimizer, step, schedule,
configs, every rank's random streams and every rank's bad-frame ledger, as tensors and plain
containers (see model.checkpoint), so a run continues exactly from any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model import distributed as dist
from model.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    load_weights,
    model_state_dict,
    restore_rng,
    save_checkpoint,
)
from model.config import ModelConfig
from model.run_fingerprint import data_change, flat_settings, history_entry, setting_changes
from model.run_folder import kept_checkpoints
from model.train_config import TrainConfig
from model.train_state import TrainState
from siammae_common.console import UserError, info, warn

RESUME_KEYS = ("optimizer", "step", "rng")      # what a checkpoint needs besides the model to be resumed


def checkpoint_state(cfg: TrainConfig, dist_info: dist.DistInfo, state: TrainState) -> dict[str, Any] | None:
    """The checkpoint dict on rank 0 (None elsewhere); a collective: every rank must call it."""
    per_rank = dist.all_gather_objects({"rng": {**capture_rng(), "mask": state.mask_rng.get_state().cpu()},
                                        "bad_frames": state.bad_frames.state_dict()})
    if not dist_info.is_main:
        return None
    return {"model": model_state_dict(state.model), "model_config": cfg.model.to_dict(),
            "optimizer": state.optimizer.state_dict(), "step": state.step, "schedule": vars(state.schedule).copy(),
            "train_config": cfg.to_dict(), "world_size": dist_info.world_size, "data": state.data,
            "history": state.history,
            "rng": [r["rng"] for r in per_rank], "bad_frames": [r["bad_frames"] for r in per_rank]}


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (a full disk): one line naming the file; the previous one is kept."""


def save(cfg: TrainConfig, dist_info: dist.DistInfo, state: TrainState, keep_as: str | None) -> None:
    """Update checkpoints/latest.pt (and keep the same state as `keep_as`); every rank must call this."""
    ckpt = checkpoint_state(cfg, dist_info, state)
    if ckpt is not None:
        for path in [cfg.latest_checkpoint, *([cfg.latest_checkpoint.with_name(keep_as)] if keep_as else [])]:
            try:
                save_checkpoint(path, ckpt)
            except OSError as e:
                raise CheckpointSaveError(f"{path}: cannot save the checkpoint at step {state.step} ({e.strerror}); "
                                          "the file is as it was before: free space (or fix the folder) and continue "
                                          "with --resume") from None
    dist.barrier()


def _load(path: Path, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    try:
        return load_checkpoint(path, map_location=device)
    except CheckpointError as e:
        kept = [p for p in kept_checkpoints(cfg.out) if p != path]
        hint = f"; resume from a kept one with --resume-from {kept[-1]}" if kept and path == cfg.latest_checkpoint \
            else ""
        raise UserError(f"{e}{hint}") from None


def resume(path: Path, cfg: TrainConfig, dist_info: dist.DistInfo, state: TrainState) -> dict[str, Any]:
    """Restore everything from the checkpoint at `path` into `state` (its step and history too), after
    checking that it was made from the same data and run-defining options (unless --resume-anyway).
    Returns the settings that made the checkpoint (TrainConfig.to_dict(); this run's if it has none)."""
    ckpt = _load(path, cfg, state.device)
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise UserError(f"{path}: holds no {', '.join(missing)} (weights only, from an older siammae): it can "
                        "be evaluated but not resumed from")
    step = ckpt["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UserError(f"{path}: damaged (step {step!r} is not a count of steps); resume from another checkpoint "
                        "with --resume-from")
    saved_cfg = ModelConfig.from_dict(ckpt["model_config"])
    if saved_cfg != cfg.model:
        raise UserError(f"{path} holds a different model ({saved_cfg}); use the same model options or another --out")
    entry, made_with = _checked_settings(path, ckpt, cfg, dist_info, state.data)
    state.history = [*(ckpt.get("history") or []), entry]
    try:
        load_weights(state.model, ckpt["model"], path)
        state.optimizer.load_state_dict(ckpt["optimizer"])
    except (CheckpointError, ValueError) as e:     # the optimizer's groups or sizes do not fit the model
        raise UserError(f"{e}" if isinstance(e, CheckpointError) else f"{path}: damaged optimizer state ({e}); "
                        "resume from another checkpoint with --resume-from") from None
    if ckpt.get("schedule") != vars(state.schedule) and dist_info.is_main:
        warn(f"resume: the lr schedule changed from {ckpt.get('schedule')} to {vars(state.schedule)}")
    _restore_streams(ckpt, dist_info, state)
    state.step = step
    if dist_info.is_main:
        info(f"resumed from {path} at step {state.step}")
    return made_with


def _checked_settings(path: Path, ckpt: dict[str, Any], cfg: TrainConfig, dist_info: dist.DistInfo,
                      data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the history entry of this resume, the settings that made the checkpoint); UserError (one line:
    every difference) when the shard set or an option that defines the run differs from the checkpoint's,
    unless --resume-anyway."""
    try:
        made_with = TrainConfig.from_dict(ckpt["train_config"]).to_dict()
        saved = flat_settings(made_with)
    except (KeyError, TypeError, ValueError, AttributeError):          # none saved, or unreadable: adopt
        made_with, saved = cfg.to_dict(), None
    now = flat_settings(cfg.to_dict())
    defining, other = setting_changes(saved, now) if saved is not None else ([], [])
    moved = data_change(ckpt.get("data"), data)
    defining = [moved, *defining] if moved else defining
    if defining and not cfg.resume_anyway:
        raise UserError(f"{path}: made with other data or settings ({'; '.join(defining)}); resume with the same "
                        "ones, pass --resume-anyway to go on with these (recorded in config.json's history), or "
                        "start a new run in another --out")
    adopted = saved is None or not ckpt.get("data")
    notes = [f"going on with {'; '.join(defining)}"] if defining else []
    notes += ["adopting the current shard fingerprint (the checkpoint has none)"] if adopted else []
    if dist_info.is_main and notes:
        info(f"resume: {', '.join(notes)}; recorded in config.json's history")
    return history_entry(int(ckpt["step"]), path, dist_info.world_size, defining, other, adopted), made_with


def _restore_streams(ckpt: dict[str, Any], dist_info: dist.DistInfo, state: TrainState) -> None:
    """Every rank's random streams and bad-frame ledger, when the world size is the one that saved them."""
    rng, ledgers = ckpt.get("rng") or [], ckpt.get("bad_frames") or []
    if len(rng) == dist_info.world_size:
        restore_rng(rng[dist_info.rank])
        state.mask_rng.set_state(rng[dist_info.rank]["mask"].cpu())
    elif dist_info.is_main:
        warn(f"resume: checkpoint written by {len(rng)} processes, now {dist_info.world_size}; "
             "random streams restart from the seed")
    if len(ledgers) == dist_info.world_size:
        state.bad_frames.load_state_dict(ledgers[dist_info.rank])
    else:                          # another world size: every rank still skips every known bad frame
        for ledger in ledgers:
            state.bad_frames.load_state_dict({"frames": ledger.get("frames", [])})
