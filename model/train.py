"""SiamMAE pretraining: a plain loop, readable top to bottom (one process, or one per GPU under torchrun).

A step is one optimizer step over `batch_size` pairs (all ranks, all accumulation micro-batches).
Epoch e covers steps [e * steps_per_epoch, (e + 1) * steps_per_epoch); the loader's order is fixed by
(seed, epoch, rank), and the masks come from a generator saved in the checkpoint, so a run resumed from
any checkpoint replays exactly the batches and masks the uninterrupted run would have seen. The loader
starts a resumed run at the very micro-batch it stopped before (nothing before it is read again), and
its epochs hold a whole number of steps, so the DALI pipeline is built once per run.
Every logged row says how long the steps waited for data (model.train_log).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from model import distributed as dist
from model.masking import random_masking
from model.recon_images import reconstruction_grid
from model.run_folder import prepare_run_folder, resume_source
from model.schedule import param_groups, set_lr
from model.siammae import SiamMAE, SiamMAEOutput
from model.train_checkpoint import resume, save
from model.train_config import RunInputs, TrainConfig, check_run_inputs
from model.train_loader import build_loader, described, loader_config, set_torch_threads
from model.train_log import RunLog, StepWindow, run_config
from model.train_state import TrainState, make_schedule
from model.train_summary import start_summary
from siammae_common.console import UserError, info
from siammae_common.folder_lock import folder_lock


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig) -> int:
    """Run (or continue) training; returns the number of optimizer steps done. The main process holds
    the run folder's lock throughout (siammae_common.folder_lock): a second trainer into the same --out
    is refused at once."""
    dist_info = dist.dist_info_from_env()
    with folder_lock(cfg.out) if dist_info.is_main else contextlib.nullcontext():
        inputs = check_run_inputs(cfg, dist_info.world_size)
        try:
            device = dist.resolve_device(cfg.device, dist_info)
        except RuntimeError as e:
            raise UserError(str(e)) from None
        dist.init_process_group(dist_info, device)
        try:
            return _train(cfg, dist_info, device, inputs)
        finally:
            dist.shutdown()


def _train(cfg: TrainConfig, dist_info: dist.DistInfo, device: torch.device, inputs: RunInputs) -> int:
    seed_everything(cfg.seed + dist_info.rank)
    set_torch_threads(cfg, device)
    if device.type == "cuda":                      # TF32 for whatever runs outside bf16 autocast
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if dist_info.is_main:
        prepare_run_folder(cfg)                  # before the loader reads OUT/bad_frames.jsonl
    dist.barrier()
    model = SiamMAE(cfg.model).to(device).train()
    loader_cfg = loader_config(cfg, dist_info, device)
    loader = build_loader(loader_cfg, inputs.data)
    steps_per_epoch = len(loader) // cfg.accum_steps
    state = _new_state(cfg, dist_info, model, steps_per_epoch, loader.bad_frames)
    state.data = inputs.fingerprint
    source = resume_source(cfg)
    made_with = resume(source, cfg, dist_info, state) if source is not None else None
    if dist_info.enabled:
        state.net = DistributedDataParallel(state.model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        state.net = torch.compile(state.net)

    stop = min(cfg.stop_at_step or state.schedule.total_steps, state.schedule.total_steps)
    log = None
    if dist_info.is_main:
        resolved = described(loader_cfg)
        for line in start_summary(cfg, dist_info, state, steps_per_epoch, stop, loader.pairs_per_epoch, resolved,
                                  str(device)):
            info(line)
        log = RunLog(cfg, state, run_config(cfg, state, steps_per_epoch, dist_info, resolved, made_with))
    window = StepWindow(device)
    try:
        while state.step < stop:
            epoch, done_in_epoch = divmod(state.step, steps_per_epoch)
            # a resumed run starts at the micro-batch it stopped before; len(loader) is whole steps
            loader.set_epoch(epoch, start_batch=done_in_epoch * cfg.accum_steps)
            batches = iter(loader)
            for _ in range(done_in_epoch, steps_per_epoch):
                f1, f2, out = train_step(cfg, dist_info, state, batches, window)
                last = state.step >= stop
                if state.step % cfg.log_every == 0 or last:
                    _check_finite(state)
                    stats = window.flush(cfg.batch_size)              # a collective: every rank flushes
                    if log is not None:
                        log.scalars(state.step, state.step / steps_per_epoch, state.optimizer.param_groups[0]["lr"],
                                    stats)
                with window.paused():
                    if log is not None and (state.step % cfg.recon_every == 0 or last):
                        state.model.eval()
                        log.image(state.step, reconstruction_grid(state.model, f1, f2, out))
                        state.model.train()
                    epochs_done, in_epoch = divmod(state.step, steps_per_epoch)
                    keep = in_epoch == 0 and epochs_done % cfg.save_every == 0
                    if last or keep or state.step % cfg.latest_every == 0:
                        _check_finite(state)
                        save(cfg, dist_info, state, keep_as=f"epoch_{epochs_done:04d}.pt" if keep else None)
                if last:
                    break
    finally:
        if log is not None:
            log.close()
        loader.close()
    if dist_info.is_main:
        info(window.input_bound_line())
        info(f"trained to step {state.step} of {state.schedule.total_steps}; run folder {cfg.out}")
    return state.step


def _new_state(cfg: TrainConfig, dist_info: dist.DistInfo, model: SiamMAE, steps_per_epoch: int,
               bad_frames: Any) -> TrainState:
    """This rank's state at step 0: the new model, its optimizer and schedule, the mask stream."""
    device = next(model.parameters()).device
    schedule = make_schedule(cfg, steps_per_epoch)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=schedule(0), betas=(0.9, 0.95))
    mask_rng = torch.Generator(device=device)
    mask_rng.manual_seed(cfg.seed * 1000 + dist_info.rank)
    return TrainState(model, model, optimizer, schedule, mask_rng, bad_frames,
                      first_bad_step=torch.full((), -1, dtype=torch.long, device=device))


def train_step(cfg: TrainConfig, dist_info: dist.DistInfo, state: TrainState, batches: Iterator[Any],
               window: StepWindow) -> tuple[torch.Tensor, torch.Tensor, SiamMAEOutput]:
    """One optimizer step: forward and backward over accum_steps micro-batches (gradients all-reduced on
    the last one), then the update at this step's learning rate.

    Returns the last micro-batch's frames [b, 3, S, S] and output (for reconstruction images).
    """
    set_lr(state.optimizer, state.schedule(state.step))
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and state.device.type == "cuda"
           else contextlib.nullcontext())
    for k in range(cfg.accum_steps):
        batch = window.next_batch(batches)                              # the host's wait for data is timed
        f1, f2 = batch.f1, batch.f2                                     # [b, 3, S, S] on the device
        p = cfg.model.patch_size
        n = (f2.shape[-2] // p) * (f2.shape[-1] // p)
        masking = random_masking(f2.shape[0], n, cfg.model.mask_ratio, f2.device, generator=state.mask_rng)
        sync = k == cfg.accum_steps - 1 or not dist_info.enabled
        with (contextlib.nullcontext() if sync else state.net.no_sync()), amp:
            out = state.net(f1, f2, masking=masking)
        (out.loss / cfg.accum_steps).backward()
        loss = out.loss.detach()
        bad = ~torch.isfinite(loss) & (state.first_bad_step < 0)       # no host sync here
        state.first_bad_step = torch.where(bad, state.step, state.first_bad_step)
        window.add(loss / cfg.accum_steps)
    window.steps += 1
    if cfg.clip_grad is not None:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.clip_grad)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return f1, f2, out


def _check_finite(state: TrainState) -> None:
    bad = int(dist.all_reduce_max(state.first_bad_step).item())
    if bad >= 0:
        raise NonFiniteLossError(f"the loss became non-finite at step {bad + 1}; stopping "
                                 "(try a lower --lr/--blr, --clip-grad, or a different --seed)")
