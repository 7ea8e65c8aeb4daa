"""`siammae-train`: SiamMAE pretraining on clip shards. The same command runs on one GPU, on the CPU,
and on many GPUs under `torchrun --nproc_per_node=N $(which siammae-train) ...`."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click

from model.config import DECODER_KINDS, ENCODER_KINDS, MODEL_NAMES, ModelConfig
from model.train_config import TrainConfig
from pipeline.config import DecoderConfig, PairSamplingConfig
from siammae_common.cli_types import OneLineCommand
from siammae_common.console import UserError

FIELDS = {**{f.name: f for f in dataclasses.fields(TrainConfig)},      # one name per setting: the field's
          **{f.name: f for f in dataclasses.fields(ModelConfig)},      # (the CLI's defaults are the dataclasses')
          **{f.name: f for f in dataclasses.fields(PairSamplingConfig)},
          **{f.name: f for f in dataclasses.fields(DecoderConfig)}}
# "auto" as the command line spells it (TrainConfig.from_options turns "auto" / 0 into the dataclasses' None)
DEFAULTS: dict[str, object] = {"num_threads": 0, "parallel_source": "auto", "source_prefetch": 0, "py_num_workers": 0}


def default(name: str) -> object:
    """The option's default: its dataclass field's."""
    if name in DEFAULTS:
        return DEFAULTS[name]
    f = FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


class CropScale(click.ParamType):
    """`LO,HI` -> (lo, hi) floats; the range itself is checked with the other options."""

    name = "LO,HI"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        try:
            lo, hi = (float(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r}: expected two numbers LO,HI such as 0.15,0.5", param, ctx)
        return (lo, hi)


CROP_SCALE = CropScale()


def opt(*decls: str, name: str, help: str, **kw: object):
    """A click option named after its dataclass field (`--decoder-embed-dim` sets decoder_embed_dim), with
    that field's default shown in --help; further decls are the old names, still accepted."""
    return click.option(*decls, name, default=default(name), show_default=True, help=help, **kw)


def flag_names(message: str) -> str:
    """A ValueError of the config tree in the CLI's words: `mask_ratio 1.5: ...` -> `--mask-ratio 1.5: ...`."""
    options = {p.name for p in main.params}
    return re.sub(r"\b[a-z]+(?:_[a-z]+)+\b|^[a-z]+\b",
                  lambda m: "--" + m.group(0).replace("_", "-") if m.group(0) in options else m.group(0), message)


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--shards", type=click.Path(path_type=Path), required=True,
              help="Shard folder made by tools/make_shards.py (holds manifest.json).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/siammae"), show_default=True,
              help="Run folder: config.json, checkpoints/, tb/, metrics.jsonl, recon/.")
@click.option("--model", "model", type=click.Choice(MODEL_NAMES), default=default("model").name, show_default=True,
              help="Encoder size and patch.")
@opt("--encoder", name="encoder", type=click.Choice(ENCODER_KINDS), help="siamese: frames encoded apart; "
     "joint: visible tokens of both frames together.")
@opt("--decoder", name="decoder", type=click.Choice(DECODER_KINDS), help="Decoder block kind.")
@opt("--mask-ratio", name="mask_ratio", type=float, help="Fraction of f2's patches masked (0 < r < 1).")
@opt("--norm-pix-loss/--no-norm-pix-loss", "--norm-pix/--no-norm-pix", name="norm_pix_loss",
     help="Targets are per-patch normalised pixels.")
@click.option("--decoder-embed-dim", "--decoder-dim", "decoder_embed_dim", type=int, default=None,
              help="Decoder width [default: the model's; 512 for ViTs].")
@click.option("--decoder-depth", "decoder_depth", type=int, default=None, help="Decoder blocks [default: the model's; 8].")
@click.option("--decoder-num-heads", "--decoder-heads", "decoder_num_heads", type=int, default=None,
              help="Decoder heads [default: the model's; 16].")
@click.option("--input-size", "input_size", type=int, default=None,
              help="Crop size S, pairs are S x S [default: the model's; 224, 64 for vit_micro_*].")
@opt("--batch-size", name="batch_size", type=int,
     help="Pairs per optimizer step, summed over GPUs and accumulation steps.")
@opt("--accum-steps", name="accum_steps", type=int, help="Gradient accumulation micro-batches per step.")
@opt("--epochs", name="epochs", type=int, help="Epochs (one pass over every clip x pairs-per-clip).")
@opt("--max-steps", name="max_steps", type=int, help="Optimizer steps; overrides --epochs for the schedule.")
@opt("--stop-at-step", name="stop_at_step", type=int,
     help="Stop after this step, keeping the schedule (for time-limited jobs; continue with --resume).")
@opt("--blr", name="blr", type=float, help="Base learning rate; lr = blr x batch-size / 256.")
@opt("--lr", name="lr", type=float, help="Absolute peak learning rate (overrides --blr).")
@opt("--min-lr", name="min_lr", type=float, help="Learning rate at the end of the cosine.")
@opt("--warmup-epochs", name="warmup_epochs", type=float, help="Linear warmup length in epochs.")
@opt("--warmup-steps", name="warmup_steps", type=int, help="Warmup length in steps (overrides --warmup-epochs).")
@opt("--weight-decay", name="weight_decay", type=float, help="AdamW weight decay (betas 0.9, 0.95).")
@opt("--clip-grad", name="clip_grad", type=float, help="Clip the gradient norm to this value.")
@opt("--loader", name="loader", type=click.Choice(["dali", "wds"]),
     help="dali: DALI pipeline; wds: webdataset + PyTorch DataLoader fallback.")
@opt("--pairs-per-clip", name="pairs_per_clip", type=int, help="Pairs drawn per clip read (repeated sampling).")
@opt("--gap-min", name="gap_min", type=int, help="Smallest frame gap between f1 and f2.")
@opt("--gap-max", name="gap_max", type=int, help="Largest frame gap (clamped to the clip's length).")
@opt("--crop-scale", name="crop_scale", type=CROP_SCALE,
     help="LO,HI: area fraction of the frame a crop covers, drawn uniformly (RandomResizedCrop's scale).")
@opt("--num-workers", name="num_workers", type=int, help="DataLoader workers (--loader wds).")
@opt("--num-threads", "--threads", name="num_threads", type=int,
     help="DALI decoder threads (--loader dali); 0: the cores per process (affinity / LOCAL_WORLD_SIZE) minus "
          "the trainer's own (one on a GPU plus the byte reader's workers; --torch-threads on a CPU).")
@opt("--hw-decoder-load", name="hw_decoder_load", type=float,
     help="Share of the JPEGs DALI sends to the GPU's hardware JPEG decoder (the rest: CPU Huffman + GPU).")
@opt("--prefetch-queue-depth", "--prefetch", name="prefetch_queue_depth", type=int, help="Batches the DALI pipeline prepares ahead.")
@opt("--parallel-source", name="parallel_source", type=click.Choice(["auto", "on", "off"]),
     help="Read the frames' bytes in DALI worker processes (auto: on with CUDA, off on a CPU).")
@opt("--py-num-workers", name="py_num_workers", type=int,
     help="Worker processes of that parallel byte reader; 0: a quarter of the cores per process (1 to 8).")
@opt("--source-prefetch", name="source_prefetch", type=int,
     help="Batches the byte reader's workers prepare ahead, apart from --prefetch-queue-depth; 0: 2 per worker.")
@opt("--bad-frame-limit", name="bad_frame_limit", type=float,
     help="Largest fraction of an epoch's pairs that may be replaced because they read a bad frame "
          "(listed in OUT/bad_frames.jsonl); above it the run stops: the data is broadly damaged.")
@opt("--torch-threads", name="torch_threads", type=int,
     help="PyTorch intra-op threads per process; 0: on a CPU the cores per process minus --num-threads (half of "
          "them when --num-threads is 0), at least 1; on a GPU PyTorch's own default.")
@opt("--device", name="device", type=click.Choice(["auto", "cuda", "cpu"]),
     help="auto: cuda:LOCAL_RANK when a GPU is present, else cpu.")
@opt("--seed", name="seed", type=int, help="Seed of data order, augmentation, masks and initialisation.")
@opt("--compile/--no-compile", name="compile", help="torch.compile the model.")
@opt("--amp/--no-amp", name="amp", help="bf16 autocast on CUDA (ignored on CPU).")
@opt("--resume/--no-resume", name="resume",
     help="Continue from OUT/checkpoints/latest.pt; starts a new run only if OUT holds no run yet.")
@click.option("--resume-from", "resume_from", type=click.Path(path_type=Path), default=None,
              help="Continue from this checkpoint (latest.pt or any kept epoch_NNNN.pt) into OUT.")
@opt("--resume-anyway/--no-resume-anyway", name="resume_anyway",
     help="Resume although the shard set or an option that fixes the batches or the optimisation (seed, batch "
          "size, epochs, sampling, lr, ...) differs from the checkpoint's; recorded in config.json's history.")
@opt("--overwrite/--no-overwrite", name="overwrite",
     help="Start over in an OUT that holds a run, removing its checkpoints, logs and images.")
@opt("--allow-incomplete/--no-allow-incomplete", name="allow_incomplete",
     help="Train on a shard folder whose manifest make_shards has not marked complete (the shards it lists).")
@opt("--log-every", name="log_every", type=int,
     help="Steps between metrics.jsonl / TensorBoard rows and progress updates (a plain line each when stderr "
          "is not a terminal, as in a batch job's log).")
@opt("--save-every", name="save_every", type=int,
     help="Epochs between kept checkpoints (checkpoints/epoch_NNNN.pt).")
@opt("--latest-every", name="latest_every", type=int,
     help="Steps between updates of checkpoints/latest.pt; it is also written with every kept checkpoint "
          "(--save-every) and at the last step.")
@opt("--recon-every", name="recon_every", type=int, help="Steps between reconstruction images (recon/).")
def main(**options: object) -> None:
    """Pretrain SiamMAE on frame pairs from clip shards.

    \b
    one GPU or CPU:  siammae-train --shards shards/ucf101 --out runs/s16
    8 GPUs:          torchrun --nproc_per_node=8 $(which siammae-train) --shards shards/ucf101 --out runs/s16
    """
    from model.checkpoint import CheckpointError  # imported late: --help stays fast
    from model.train import NonFiniteLossError, train
    from model.train_checkpoint import CheckpointSaveError
    from pipeline.frame_index import ShardError

    try:
        cfg = TrainConfig.from_options(**options)
    except ValueError as e:                      # a bad value: one line naming the option, exit 2
        raise UserError(flag_names(str(e))) from None
    try:
        train(cfg)
    except (NonFiniteLossError, CheckpointSaveError) as e:        # the run, not the input: exit 1
        raise click.ClickException(str(e)) from None
    except (ShardError, FileNotFoundError, CheckpointError) as e:   # data or files: one line, exit 2
        raise UserError(str(e)) from None


if __name__ == "__main__":
    main()
