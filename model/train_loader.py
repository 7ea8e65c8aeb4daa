"""The loader siammae-train uses, built from its options, and how the cores are shared between the
loader and training. `benchmarks.train_step_bench` builds its loader here too, so the GPU check
measures the very loader training uses."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from typing import Any

import torch

from model import distributed as dist
from model.train_config import TrainConfig
from pipeline.config import LoaderConfig
from siammae_common.console import UserError


def cores_per_process() -> int:
    """The cores this process may use (its CPU affinity, else the machine's) divided among the
    processes torchrun started on this node (LOCAL_WORLD_SIZE)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:                        # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def torch_threads(cfg: TrainConfig, device: torch.device) -> int:
    """torch's intra-op threads: --torch-threads, else on a CPU the process's cores minus --num-threads
    (half of them when --num-threads is auto: the other half decodes); on a GPU torch's own default."""
    if cfg.torch_threads > 0:
        return cfg.torch_threads
    if device.type == "cpu":
        cores = cores_per_process()
        return max(1, cores - cfg.dali.num_threads if cfg.dali.num_threads > 0 else cores // 2)
    return torch.get_num_threads()


def source_workers(cfg: TrainConfig) -> int:
    """Processes of DALI's parallel byte reader: --py-num-workers, else a quarter of the cores per process
    (at least 1, at most 8). One worker reads, checks and assembles tens of thousands of pairs/s
    (benchmarks/README.md, the `source` row), so 16 cores per GPU give 4 workers: several times what one
    GPU decodes, leaving 11 cores to DALI's threads."""
    if cfg.dali.py_num_workers > 0:
        return cfg.dali.py_num_workers
    return min(8, max(1, cores_per_process() // 4))


def decoder_threads(cfg: TrainConfig, device: torch.device) -> int:
    """DALI's threads: --num-threads, else the cores per process minus the trainer's own: on a GPU one
    core for the training loop's Python thread (and one per parallel-source worker), on a CPU the cores
    torch computes on."""
    if cfg.dali.num_threads > 0:
        return cfg.dali.num_threads
    cores = cores_per_process()
    if device.type == "cuda":
        workers = source_workers(cfg) if cfg.dali.parallel_source is not False else 0
        return max(1, cores - 1 - workers)
    return max(1, cores - torch_threads(cfg, device))


def set_torch_threads(cfg: TrainConfig, device: torch.device) -> None:
    """On a CPU, intra-op threads that outnumber the free cores spin against the loader's threads
    (measured: 4-5x slower steps on 2 cores), so torch gets only its share of the cores."""
    torch.set_num_threads(torch_threads(cfg, device))


def loader_config(cfg: TrainConfig, dist_info: dist.DistInfo, device: torch.device) -> LoaderConfig:
    """This rank's loader settings, every DALI knob resolved (what config.json records)."""
    return LoaderConfig(shards=cfg.shards, batch_size=cfg.micro_batch(dist_info.world_size),
                        sampling=cfg.sampling,
                        decoder=replace(cfg.dali, num_threads=decoder_threads(cfg, device),
                                        py_num_workers=source_workers(cfg)), kind=cfg.loader,
                        device="cuda" if device.type == "cuda" else "cpu", dtype="float32",
                        seed=cfg.seed, rank=dist_info.rank, world_size=dist_info.world_size,
                        num_workers=cfg.num_workers, bad_frame_limit=cfg.bad_frame_limit,
                        bad_frame_log=cfg.out / "bad_frames.jsonl", batches_per_step=cfg.accum_steps)


def build_loader(cfg: LoaderConfig, data: Any = None) -> Any:
    """This rank's PairLoader over `data` (the shard folder check_run_inputs opened; else cfg.shards):
    micro-batches of (f1, f2) [b, 3, S, S], order fixed by (seed, epoch, rank)."""
    from pipeline.frame_index import ShardError
    from pipeline.loader import build_pair_loader
    from pipeline.sampling import EpochTooShort

    try:
        return build_pair_loader(cfg, data)
    except ShardError as e:
        raise UserError(str(e)) from None
    except EpochTooShort as e:
        raise UserError(f"--batch-size / --accum-steps: {e}") from None


def described(cfg: LoaderConfig) -> dict[str, Any]:
    """The loader settings as config.json records them (every auto value resolved)."""
    out = asdict(cfg)
    out["shards"], out["bad_frame_log"] = str(cfg.shards), str(cfg.bad_frame_log)
    out["decoder"]["parallel_source"] = cfg.parallel_source
    out["decoder"]["source_prefetch"] = cfg.decoder.source_queue_depth
    return out
