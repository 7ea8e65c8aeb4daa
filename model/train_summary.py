"""The lines siammae-train prints before its first step (rank 0): what this run will do, with every
derived number spelled out (world size, per-GPU and effective batch, lr after scaling, steps, the loader
and its resolved settings), so a batch job's log says on its first screen what is running."""

from __future__ import annotations

import os
from typing import Any

from model.distributed import DistInfo
from model.train_config import TrainConfig
from model.train_state import TrainState


def _processes(dist_info: DistInfo) -> str:
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if dist_info.world_size == 1:
        return "1 process"
    nodes = max(1, dist_info.world_size // max(1, per_node))
    return f"world size {dist_info.world_size} ({nodes} node{'s' * (nodes > 1)} x {per_node} processes)"


def _lr(cfg: TrainConfig, state: TrainState) -> str:
    peak = state.schedule.peak_lr
    how = "--lr" if cfg.lr is not None else f"--blr {cfg.blr:g} x {cfg.batch_size} / 256"
    return (f"lr {peak:.2e} ({how}), {state.schedule.warmup_steps:,} warmup steps, cosine to "
            f"{state.schedule.min_lr:g}")


def _loader(loader: dict[str, Any]) -> str:
    if loader["kind"] == "wds":
        return f"loader wds (Pillow in {loader['num_workers']} DataLoader workers) on {loader['device']}"
    d = loader["decoder"]
    parallel = (f"parallel byte reader on ({d['py_num_workers']} worker(s), {d['source_prefetch']} batches ahead)"
                if d["parallel_source"] else "byte reader in the pipeline")
    hw = f", hw_decoder_load {d['hw_decoder_load']:g}" if loader["device"] == "cuda" else ""
    return (f"loader dali on {loader['device']}: {d['num_threads']} decoder thread(s), prefetch queue "
            f"{d['prefetch_queue_depth']}{hw}, {parallel}")


def start_summary(cfg: TrainConfig, dist_info: DistInfo, state: TrainState, steps_per_epoch: int,
                  stop: int, pairs_per_epoch: int, loader: dict[str, Any], device: str) -> list[str]:
    """The run's plan as a few plain lines (pairs_per_epoch: this process's share)."""
    micro = cfg.micro_batch(dist_info.world_size)
    total = state.schedule.total_steps
    where = (f"resuming at step {state.step:,}" if state.step else "from step 0") + (
        f", stopping at step {stop:,} (--stop-at-step)" if stop < total else "")
    params = sum(p.numel() for p in state.model.parameters())
    model = (f"siammae-train: {_processes(dist_info)} on {device}; model {cfg.model.name} ({params / 1e6:.1f}M "
             f"parameters, {cfg.model.input_size}px pairs, mask ratio {cfg.model.mask_ratio:g})")
    batch = (f"batch: {micro} pairs per process x {dist_info.world_size} process(es) x {cfg.accum_steps} "
             f"accumulation step(s) = {cfg.batch_size} pairs per optimizer step; {_lr(cfg, state)}")
    steps = (f"steps: {total:,} ({total / steps_per_epoch:.3g} epochs of {steps_per_epoch:,} steps; "
             f"{pairs_per_epoch * dist_info.world_size:,} pairs per epoch); {where}")
    folder = (f"run folder {cfg.out}: metrics.jsonl and a progress line every {cfg.log_every} step(s), latest.pt "
              f"every {cfg.latest_every} steps, kept checkpoints every {cfg.save_every} epoch(s)")
    return [model, batch, steps, f"{_loader(loader)}; shards {cfg.shards}", folder]
