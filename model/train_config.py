"""What a training run is: one frozen dataclass built from the command line, checked before any work."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import DECODER_KINDS, ENCODER_KINDS, MODEL_NAMES, ModelConfig, model_config
from pipeline.shard_format import MANIFEST_NAME
from pipeline.shard_reader import read_manifest
from siammae_common.console import UserError


@dataclass(frozen=True)
class TrainConfig:
    """Every option of siammae-train (the CLI's defaults are these)."""

    shards: Path
    out: Path
    # model
    model: str = "vit_small_patch16"
    encoder: str = "siamese"
    decoder: str = "cross-self"
    mask_ratio: float = 0.95
    norm_pix: bool = True
    decoder_dim: int | None = None            # None: the named model's (512 for the ViT sizes)
    decoder_depth: int | None = None
    decoder_heads: int | None = None
    input_size: int | None = None            # None: the named model's (224; 64 for vit_micro_*)
    # optimisation
    batch_size: int = 256                     # pairs per optimizer step, all ranks and accumulation
    accum_steps: int = 1
    epochs: int = 400
    max_steps: int | None = None              # overrides epochs for the schedule's length
    stop_at_step: int | None = None           # leave early (as if killed); the schedule is unchanged
    blr: float = 1.5e-4                       # base lr for a batch of 256
    lr: float | None = None                   # absolute lr; overrides blr
    min_lr: float = 0.0
    warmup_epochs: float = 40.0
    warmup_steps: int | None = None           # overrides warmup_epochs
    weight_decay: float = 0.05
    clip_grad: float | None = None
    # data
    loader: str = "dali"
    pairs_per_clip: int = 2
    gap_min: int = 4
    gap_max: int = 48
    crop_scale: tuple[float, float] = (0.5, 1.0)  # area fraction of the frame each crop covers (lo, hi)
    num_workers: int = 2                      # --loader wds: DataLoader worker processes
    # --loader dali: the knobs siammae-bench sweeps (see pipeline.config.DecoderConfig)
    threads: int = 0                          # decoder threads; 0: the cores per process minus the trainer's
    hw_decoder_load: float = 0.65             # share of the JPEGs for the GPU's hardware decoder
    prefetch: int = 2                         # batches the pipeline prepares ahead
    parallel_source: str = "auto"             # byte reader in worker processes: auto (on with CUDA), on, off
    py_num_workers: int = 1                   # worker processes of the parallel byte reader
    source_prefetch: int = 0                  # batches those workers prepare ahead; 0: 2 per worker
    bad_frame_limit: float = 0.001            # largest fraction of an epoch's pairs replaced for bad frames
    torch_threads: int = 0                    # CPU training: 0 = the cores left beside the loader's threads
    # machinery
    device: str = "auto"
    seed: int = 0
    compile: bool = False
    amp: bool = True                          # bf16 autocast (CUDA only)
    resume: bool = False
    resume_from: Path | None = None           # a kept checkpoint to continue from (any of latest / epoch_*)
    overwrite: bool = False                   # start over in an --out that holds a run (its files are removed)
    log_every: int = 20
    save_every: int = 20                      # epochs between kept checkpoints
    latest_every: int = 500                   # steps between updates of checkpoints/latest.pt
    recon_every: int = 500                    # steps between reconstruction images

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}

    def model_config(self) -> ModelConfig:
        return model_config(self.model, encoder=self.encoder, decoder=self.decoder, mask_ratio=self.mask_ratio,
                            norm_pix_loss=self.norm_pix, input_size=self.input_size,
                            decoder_embed_dim=self.decoder_dim, decoder_depth=self.decoder_depth,
                            decoder_num_heads=self.decoder_heads)

    def micro_batch(self, world_size: int) -> int:
        """Pairs per forward pass on one rank."""
        return self.batch_size // (world_size * self.accum_steps)

    @property
    def latest_checkpoint(self) -> Path:
        return self.out / "checkpoints" / "latest.pt"


def check_options(cfg: TrainConfig, world_size: int) -> ModelConfig:
    """Reject bad options with a one-line UserError before anything is loaded; returns the model config."""
    from model.run_folder import check_run_folder

    clips = _checked_manifest(cfg)
    if cfg.model not in MODEL_NAMES:
        raise UserError(f"--model {cfg.model}: unknown model; choose one of {', '.join(MODEL_NAMES)}")
    if cfg.encoder not in ENCODER_KINDS or cfg.decoder not in DECODER_KINDS:
        raise UserError(f"--encoder {cfg.encoder} / --decoder {cfg.decoder}: expected one of "
                        f"{'|'.join(ENCODER_KINDS)} / {'|'.join(DECODER_KINDS)}")
    _check_numbers(cfg)
    per_step = world_size * cfg.accum_steps
    if cfg.batch_size % per_step:
        raise UserError(f"--batch-size {cfg.batch_size} is not divisible by world size {world_size} x "
                        f"--accum-steps {cfg.accum_steps} = {per_step}")
    try:
        model_cfg = cfg.model_config()
    except ValueError as e:          # input size vs patch, heads vs width, mask ratio range
        raise UserError(f"--model {cfg.model}: {e}") from None
    epoch_pairs = math.ceil(clips / world_size) * cfg.pairs_per_clip * world_size
    if cfg.batch_size > epoch_pairs:
        raise UserError(f"--batch-size {cfg.batch_size}: larger than one epoch of pairs ({epoch_pairs}: {clips} "
                        f"clips x --pairs-per-clip {cfg.pairs_per_clip}), so every step would repeat pairs; "
                        f"use at most {epoch_pairs}")
    check_run_folder(cfg)
    return model_cfg


def _checked_manifest(cfg: TrainConfig) -> int:
    """The number of clips the shard folder's manifest lists; one clear line if it is missing or invalid."""
    if not cfg.shards.is_dir():
        raise UserError(f"--shards {cfg.shards}: no such directory")
    path = cfg.shards / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"--shards {cfg.shards}: no {MANIFEST_NAME} (make the shards with tools/make_shards.py)")
    try:
        clips = read_manifest(path).clips
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:   # not JSON, fields missing or mistyped
        raise UserError(f"{path}: not a valid shard manifest ({type(e).__name__}: {e})") from None
    if clips < 1:
        raise UserError(f"{path}: the manifest lists no clips")
    return clips


def _check_numbers(cfg: TrainConfig) -> None:
    """Counts are whole and in range, rates finite and positive (NaN fails every comparison below)."""
    at_least = {"--batch-size": (cfg.batch_size, 1), "--accum-steps": (cfg.accum_steps, 1),
                "--log-every": (cfg.log_every, 1), "--save-every": (cfg.save_every, 1),
                "--latest-every": (cfg.latest_every, 1), "--recon-every": (cfg.recon_every, 1),
                "--epochs": (cfg.epochs, 1), "--max-steps": (cfg.max_steps, 1), "--stop-at-step": (cfg.stop_at_step, 1),
                "--warmup-steps": (cfg.warmup_steps, 0), "--pairs-per-clip": (cfg.pairs_per_clip, 1),
                "--threads": (cfg.threads, 0), "--num-workers": (cfg.num_workers, 0), "--prefetch": (cfg.prefetch, 1),
                "--py-num-workers": (cfg.py_num_workers, 1), "--source-prefetch": (cfg.source_prefetch, 0),
                "--torch-threads": (cfg.torch_threads, 0), "--input-size": (cfg.input_size, 1),
                "--decoder-dim": (cfg.decoder_dim, 1), "--decoder-depth": (cfg.decoder_depth, 1),
                "--decoder-heads": (cfg.decoder_heads, 1), "--seed": (cfg.seed, 0)}
    for name, (value, low) in at_least.items():
        if value is not None and value < low:
            raise UserError(f"{name} {value}: must be at least {low}")
    if cfg.seed >= 2**32:
        raise UserError(f"--seed {cfg.seed}: must be below 2**32")
    positive = {"--blr": cfg.blr, "--lr": cfg.lr, "--clip-grad": cfg.clip_grad}
    for name, rate in positive.items():
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise UserError(f"{name} {rate}: must be a finite number above 0")
    for name, value in {"--min-lr": cfg.min_lr, "--weight-decay": cfg.weight_decay,
                        "--warmup-epochs": cfg.warmup_epochs}.items():
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{name} {value}: must be a finite number, 0 or more")
    if not 0.0 < cfg.mask_ratio < 1.0:
        raise UserError(f"--mask-ratio {cfg.mask_ratio}: must be between 0 and 1 (exclusive)")
    if not 0.0 <= cfg.hw_decoder_load <= 1.0:
        raise UserError(f"--hw-decoder-load {cfg.hw_decoder_load}: must be a fraction between 0 and 1")
    if not 0.0 <= cfg.bad_frame_limit <= 1.0:
        raise UserError(f"--bad-frame-limit {cfg.bad_frame_limit}: must be a fraction between 0 and 1")
    if not 1 <= cfg.gap_min <= cfg.gap_max:
        raise UserError(f"--gap-min {cfg.gap_min} / --gap-max {cfg.gap_max}: need 1 <= gap-min <= gap-max")
    lo, hi = cfg.crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise UserError(f"--crop-scale {lo},{hi}: need 0 < lo <= hi <= 1")
