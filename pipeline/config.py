"""Configuration of the frame-pair loader: what a pair is, how it is augmented, how it is delivered."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

LoaderKind = Literal["dali", "wds"]
OutputDType = Literal["float32", "float16", "bfloat16", "uint8"]


@dataclass(frozen=True)
class PlanKey:
    """Where a loader stands: the run's seed, the epoch, this rank and the number of ranks. A plan depends
    on nothing else (besides the clips and the sampling settings)."""

    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world size {self.world_size}")

    def at(self, epoch: int) -> PlanKey:
        """The same place in another epoch."""
        return replace(self, epoch=epoch)


@dataclass(frozen=True)
class PairSamplingConfig:
    """How two frames of one clip are chosen and augmented (identically for both frames)."""

    gap_min: int = 4                     # frames of the stored clip, inclusive
    gap_max: int = 48                    # inclusive; clamped to n_frames - 1 for short clips
    pairs_per_clip: int = 2              # K pairs drawn per clip read (repeated sampling)
    crop_size: int = 224                 # output H = W
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    antialias: bool = False              # an antialiased resize costs ~30% more on a CPU

    def __post_init__(self) -> None:
        if not 1 <= self.gap_min <= self.gap_max:
            raise ValueError(f"gap_min {self.gap_min} / gap_max {self.gap_max}: need 1 <= gap_min <= gap_max")
        if self.pairs_per_clip < 1:
            raise ValueError(f"pairs_per_clip {self.pairs_per_clip}: must be at least 1")
        if self.crop_size < 1:
            raise ValueError(f"crop_size {self.crop_size}: must be at least 1")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale {lo},{hi}: need 0 < lo <= hi <= 1")


@dataclass(frozen=True)
class DecoderConfig:
    """DALI settings exposed to the user (DALI's names); siammae-bench and siammae-train set each one."""

    hw_decoder_load: float = 0.65        # share of the JPEGs for the hardware decoder (GPU only)
    prefetch_queue_depth: int = 2        # batches the pipeline works on ahead of the consumer
    num_threads: int = 2                 # decoder / augmentation threads; 0 = auto (siammae-train resolves it
                                         # to the cores per process; a loader needs a number)
    py_num_workers: int = 1              # processes of DALI's parallel external source (the byte reader);
                                         # 0 = auto (siammae-train: a quarter of the cores per process)
    # DALI's parallel external source (worker processes) for the byte reader; None = auto: on for
    # cuda (keeps the main thread free), off on a CPU, where 2 cores measured faster without it.
    parallel_source: bool | None = None
    # batches the parallel source's workers prepare ahead, independent of the pipeline's depth;
    # None = auto: 2 per worker, so every worker always has a batch to read
    source_prefetch: int | None = None

    def __post_init__(self) -> None:
        at_least = {"num_threads": 0, "prefetch_queue_depth": 1, "py_num_workers": 0}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least {low}")
        if self.source_prefetch is not None and self.source_prefetch < 1:
            raise ValueError(f"source_prefetch {self.source_prefetch}: must be at least 1 (or auto)")
        if not 0.0 <= self.hw_decoder_load <= 1.0:
            raise ValueError(f"hw_decoder_load {self.hw_decoder_load}: must be a fraction between 0 and 1")

    @property
    def source_queue_depth(self) -> int:
        """The parallel external source's prefetch depth (resolves source_prefetch's auto)."""
        if self.source_prefetch is None:
            return max(2, 2 * self.py_num_workers)
        return self.source_prefetch


@dataclass(frozen=True)
class LoaderConfig:
    """Everything a loader needs: where the shards are, how to sample, where batches go."""

    shards: Path
    batch_size: int                       # pairs per batch
    sampling: PairSamplingConfig = field(default_factory=PairSamplingConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    kind: LoaderKind = "dali"
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: OutputDType = "float32"
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    num_workers: int = 2                  # wds fallback: DataLoader workers
    debug_indices: bool = False           # also return (clip key, i, j) per pair
    normalize_on: Literal["auto", "dali", "torch"] = "auto"  # auto: in DALI (see normalize_in_torch)
    # how DALI starts the parallel source's workers; auto: spawn with CUDA (a process that has touched
    # CUDA must never fork), else fork (cheapest). The workers receive the shard folder's path either way.
    py_start_method: Literal["auto", "fork", "spawn"] = "auto"
    bad_frame_limit: float = 0.001        # largest fraction of an epoch's pairs replaced for a bad frame
    bad_frame_log: Path | None = None     # bad_frames.jsonl: one JSON line per bad frame met
    # an epoch is cut to a whole number of this many batches (the trainer's accumulation steps): the
    # micro-batches a trainer would drop at an epoch's end are never read, and epochs stay contiguous
    batches_per_step: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        if not 0.0 <= self.bad_frame_limit <= 1.0:      # also false for NaN
            raise ValueError(f"bad_frame_limit must be in [0, 1], got {self.bad_frame_limit}")
        if self.batches_per_step < 1:
            raise ValueError(f"batches_per_step must be >= 1, got {self.batches_per_step}")
        if self.decoder.num_threads < 1:       # 0 (auto) is the trainer's to resolve
            raise ValueError(f"num_threads {self.decoder.num_threads}: a loader needs at least 1 DALI thread")
        if self.decoder.py_num_workers < 1:
            raise ValueError(f"py_num_workers {self.decoder.py_num_workers}: a loader needs at least 1 worker")

    @property
    def plan_key(self) -> PlanKey:
        """This rank's place at epoch 0 (see pipeline.sampling)."""
        return PlanKey(self.seed, 0, self.rank, self.world_size)

    @property
    def source_start(self) -> str:
        """How the parallel source's workers start (resolves py_start_method's auto)."""
        if self.py_start_method == "auto":
            return "spawn" if self.device == "cuda" else "fork"
        return self.py_start_method

    @property
    def parallel_source(self) -> bool:
        """Whether the DALI byte reader runs in worker processes (resolves DecoderConfig's auto)."""
        if self.decoder.parallel_source is None:
            return self.device == "cuda"
        return self.decoder.parallel_source

    @property
    def normalize_in_torch(self) -> bool:
        """Whether the DALI loader emits uint8 and normalises in torch. auto: in DALI, on a CPU and on
        a GPU alike: on the GPU the frames are decoded into device memory (`device="mixed"`), so
        crop_mirror_normalize normalises there, with no extra kernel or host-to-device copy."""
        if self.dtype == "uint8":
            return False
        return self.normalize_on == "torch"
