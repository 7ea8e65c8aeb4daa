"""What a training run is: one frozen tree of settings (the model, the pair sampling, the DALI decoder,
the optimisation and the machinery), built from the command line or read back from a run's config.json.

Each setting has one name from the CLI flag to the dataclass field to config.json (`--decoder-embed-dim`
-> `cfg.model.decoder_embed_dim` -> `"decoder_embed_dim"`); each dataclass checks its own values in its
`__post_init__` (ValueError, naming the setting), so a bad value never reaches the training loop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from model.config import ModelConfig, model_config
from model.run_fingerprint import shard_fingerprint
from pipeline.config import DecoderConfig, LoaderKind, PairSamplingConfig
from pipeline.manifest_checks import ShardSetError, check_manifest
from pipeline.shard_format import MANIFEST_NAME, Manifest, ShardError
from pipeline.shard_reader import read_manifest
from siammae_common.console import UserError
from siammae_common.folder_lock import writer_of

if TYPE_CHECKING:
    from pipeline.dataset import ShardDataset

@dataclass(frozen=True)
class RunInputs:
    """What check_run_inputs found: the shard folder, opened, and its fingerprint (model.run_fingerprint)."""

    data: ShardDataset
    fingerprint: dict[str, Any]


DeviceChoice = Literal["auto", "cuda", "cpu"]
ParallelSourceChoice = Literal["auto", "on", "off"]
MODEL_FIELDS = ("encoder", "decoder", "mask_ratio", "norm_pix_loss", "input_size", "decoder_embed_dim",
                "decoder_depth", "decoder_num_heads")
SAMPLING_FIELDS = ("gap_min", "gap_max", "pairs_per_clip", "crop_scale")
DALI_FIELDS = ("hw_decoder_load", "prefetch_queue_depth", "num_threads", "py_num_workers", "parallel_source",
               "source_prefetch")
# option names before the configuration tree (old command lines and old config.json files still work)
OLD_NAMES = {"norm_pix": "norm_pix_loss", "decoder_dim": "decoder_embed_dim", "decoder_heads": "decoder_num_heads",
             "threads": "num_threads", "prefetch": "prefetch_queue_depth"}
_PARALLEL = {"auto": None, "on": True, "off": False}


def _default_dali() -> DecoderConfig:
    return DecoderConfig(num_threads=0, py_num_workers=0)      # 0: from the cores per process


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of siammae-train (the CLI's defaults are these)."""

    shards: Path
    out: Path = Path("runs/siammae")
    model: ModelConfig = field(default_factory=lambda: model_config("vit_small_patch16"))
    sampling: PairSamplingConfig = field(default_factory=PairSamplingConfig)   # crop_size = model.input_size
    dali: DecoderConfig = field(default_factory=_default_dali)                # --loader dali
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
    loader: LoaderKind = "dali"
    num_workers: int = 2                      # --loader wds: DataLoader worker processes
    bad_frame_limit: float = 0.001            # largest fraction of an epoch's pairs replaced for bad frames
    torch_threads: int = 0                    # CPU training: 0 = the cores left beside the loader's threads
    # machinery
    device: DeviceChoice = "auto"
    seed: int = 0
    compile: bool = False
    amp: bool = True                          # bf16 autocast (CUDA only)
    resume: bool = False
    resume_from: Path | None = None           # a kept checkpoint to continue from (any of latest / epoch_*)
    overwrite: bool = False                   # start over in an --out that holds a run (its files are removed)
    resume_anyway: bool = False               # resume although the data or run-defining options changed (logged)
    allow_incomplete: bool = False            # train on a shard folder make_shards has not finished
    log_every: int = 20
    save_every: int = 20                      # epochs between kept checkpoints
    latest_every: int = 500                   # steps between updates of checkpoints/latest.pt
    recon_every: int = 500                    # steps between reconstruction images

    def __post_init__(self) -> None:
        at_least = {"batch_size": 1, "accum_steps": 1, "epochs": 1, "max_steps": 1, "stop_at_step": 1,
                    "warmup_steps": 0, "num_workers": 0, "torch_threads": 0, "seed": 0, "log_every": 1,
                    "save_every": 1, "latest_every": 1, "recon_every": 1}
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"{name} {value}: must be at least {low}")
        if self.seed >= 2**32:
            raise ValueError(f"seed {self.seed}: must be below 2**32")
        for name in ("blr", "lr", "clip_grad"):
            rate = getattr(self, name)
            if rate is not None and not (math.isfinite(rate) and rate > 0):   # NaN fails every comparison
                raise ValueError(f"{name} {rate}: must be a finite number above 0")
        for name in ("min_lr", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value}: must be a finite number, 0 or more")
        if not 0.0 <= self.bad_frame_limit <= 1.0:
            raise ValueError(f"bad_frame_limit {self.bad_frame_limit}: must be a fraction between 0 and 1")
        for name, choices in (("loader", LoaderKind), ("device", DeviceChoice)):
            if getattr(self, name) not in get_args(choices):
                raise ValueError(f"{name} {getattr(self, name)!r}: expected one of {', '.join(get_args(choices))}")
        if self.sampling.crop_size != self.model.input_size:
            raise ValueError(f"input_size {self.model.input_size}: the pairs' crop size is "
                             f"{self.sampling.crop_size}; they must be the same")

    @classmethod
    def from_options(cls, **options: Any) -> TrainConfig:
        """The tree from flat option names, as the CLI gives them (old names accepted): `model` names the
        size, None means the model's or the default. Raises ValueError on a bad value."""
        options = {OLD_NAMES.get(k, k): v for k, v in options.items()}
        name = options.pop("model", None) or cls.__dataclass_fields__["model"].default_factory().name
        try:
            model = model_config(name, **{k: options.pop(k, None) for k in MODEL_FIELDS})
        except KeyError as e:
            raise ValueError(f"model {name!r}: {e.args[0]}") from None
        sampling = {k: tuple(v) if k == "crop_scale" else v
                    for k in SAMPLING_FIELDS if (v := options.pop(k, None)) is not None}
        dali = {k: v for k in DALI_FIELDS if (v := options.pop(k, None)) is not None}
        if isinstance(dali.get("parallel_source"), str):
            dali["parallel_source"] = _PARALLEL[dali["parallel_source"]]
        if dali.get("source_prefetch") == 0:                   # 0 on the command line: auto
            dali["source_prefetch"] = None
        for key in ("shards", "out", "resume_from"):
            if options.get(key) is not None:
                options[key] = Path(options[key])
        return cls(model=model, sampling=PairSamplingConfig(crop_size=model.input_size, **sampling),
                   dali=dataclasses.replace(_default_dali(), **dali), **options)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainConfig:
        """Read back config.json's "train" entry: this layout, or the flat one of runs made before the
        configuration tree (the model given by name plus overrides)."""
        if not isinstance(saved.get("model"), dict):
            return cls.from_options(**saved)
        values = dict(saved)
        model = ModelConfig.from_dict(values.pop("model"))
        sampling = values.pop("sampling", {})
        sampling = {k: tuple(v) if isinstance(v, list) else v for k, v in sampling.items()}
        dali = DecoderConfig(**values.pop("dali", {}))
        for key in ("shards", "out", "resume_from"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(model=model, sampling=PairSamplingConfig(**sampling), dali=dali, **values)

    def to_dict(self) -> dict[str, Any]:
        """config.json's "train" entry: nested as the dataclasses are, paths as strings."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}

    def micro_batch(self, world_size: int) -> int:
        """Pairs per forward pass on one rank."""
        return self.batch_size // (world_size * self.accum_steps)

    @property
    def latest_checkpoint(self) -> Path:
        return self.out / "checkpoints" / "latest.pt"


def check_run_inputs(cfg: TrainConfig, world_size: int) -> RunInputs:
    """What a config alone cannot know: the shard folder, the batch split over this many processes, and the
    run folder's rules. Raises a one-line UserError before anything is loaded. Returns the shard folder,
    opened (manifest and frame tables, read once per process: the loader takes it from here), and its
    fingerprint (model.run_fingerprint)."""
    from model.run_folder import check_run_folder
    from pipeline.dataset import ShardDataset
    from pipeline.sampling import EpochTooShort, epoch_batches, pairs_per_rank

    manifest = _checked_manifest(cfg)
    try:
        data = ShardDataset.open(cfg.shards, manifest=manifest)
    except ShardError as e:
        raise UserError(str(e)) from None
    per_step = world_size * cfg.accum_steps
    if cfg.batch_size % per_step:
        raise UserError(f"--batch-size {cfg.batch_size} is not divisible by world size {world_size} x "
                        f"--accum-steps {cfg.accum_steps} = {per_step}")
    try:        # the loader's own check, on the numbers every rank will have
        epoch_batches(pairs_per_rank(len(data), world_size, cfg.sampling.pairs_per_clip),
                      cfg.micro_batch(world_size), cfg.accum_steps)
    except EpochTooShort as e:
        raise UserError(f"--batch-size {cfg.batch_size}: {e}; every step would repeat pairs") from None
    check_run_folder(cfg)
    return RunInputs(data, shard_fingerprint(manifest, cfg.shards))


def _checked_manifest(cfg: TrainConfig) -> Manifest:
    """The shard folder's manifest, read and checked once (shard_reader.read_manifest: valid, every shard
    listed once; pipeline.manifest_checks: finished, unless --allow-incomplete); one line saying what to
    run when it is not."""
    if not cfg.shards.is_dir():
        raise UserError(f"--shards {cfg.shards}: no such directory")
    path = cfg.shards / MANIFEST_NAME
    if not path.is_file():
        parts = sorted(p.name for p in cfg.shards.glob("manifest-part*-of-*.json"))
        hint = (f"it holds {parts[0]} ...: once every part is complete, run python tools/make_shards.py --merge "
                f"{cfg.shards}" if parts else "make the shards with tools/make_shards.py")
        raise UserError(f"--shards {cfg.shards}: no {MANIFEST_NAME} ({hint})")
    try:
        manifest = read_manifest(path)
        check_manifest(manifest, cfg.shards, allow_incomplete=cfg.allow_incomplete, writer=writer_of(cfg.shards))
    except (ShardError, ShardSetError) as e:
        raise UserError(str(e)) from None
    return manifest
