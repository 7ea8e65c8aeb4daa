"""siammae-ablate: the seed report's experiments (Tables 1, 2a, 2b) as one resumable command."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ablation.grid import Schedule, build_grid
from ablation.report import render_report
from ablation.runner import AblationSetup, load_results, run_grid
from evaluation.settings import DEFAULT_PROTOCOL, PROTOCOLS, PropagationSettings, protocol_settings
from pipeline.shard_format import MANIFEST_NAME
from siammae_common.atomic import write_text_atomic
from siammae_common.cli_types import COUNT, NON_NEGATIVE, POSITIVE, SEED, OneLineCommand, finite
from siammae_common.console import UserError, info
from siammae_common.folder_lock import folder_lock

DEFAULT = Schedule()


def _snapshots(value: str) -> tuple[int, ...]:
    try:
        epochs = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated epochs, e.g. 3,5,10,25") from None
    if not epochs or epochs[0] < 1:
        raise click.BadParameter(f"{value!r}: epochs must be positive")
    return epochs


def _crop_scale(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected LO,HI, e.g. 0.6,1.0") from None
    if not 0 < lo <= hi <= 1:
        raise click.BadParameter(f"{value!r}: need 0 < LO <= HI <= 1")
    return lo, hi


def _eval_settings(protocol: str, eval_size: str, input_size: int) -> PropagationSettings:
    if eval_size.lower() == "protocol":
        return protocol_settings(protocol)
    sizes = {"short_side": None, "long_side": None, "fixed_size": None}
    if eval_size.lower() == "toy":
        return protocol_settings(protocol, **{**sizes, "fixed_size": (input_size, input_size * 3 // 2)})
    if eval_size.lower() == "native":
        return protocol_settings(protocol, **sizes, size_multiple=16)
    try:
        h, w = (int(v) for v in eval_size.lower().split("x"))
        return protocol_settings(protocol, **{**sizes, "fixed_size": (h, w)})
    except ValueError as err:
        raise click.BadParameter(f"{eval_size!r}: expected HxW (multiples of the patch size), 'toy', 'native' or "
                                 f"'protocol' ({err})",
                                 param_hint="--eval-size") from None


@click.command(cls=OneLineCommand, context_settings={"show_default": True, "help_option_names": ["-h", "--help"]})
@click.option("--shards", type=click.Path(path_type=Path), required=True, help="Shards folder (make_shards output).")
@click.option("--davis-root", type=click.Path(path_type=Path), required=True,
              help="DAVIS-2017-layout folder used to evaluate every checkpoint.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Grid folder: one run folder per configuration, results.json, report.md.")
@click.option("--grid", type=click.Choice(["encdec", "mask", "epochs", "all"]), default="all",
              help="Which of the report's tables to reproduce.")
@click.option("--model", default=DEFAULT.model, help="Model size for every run (e.g. vit_tiny_patch16 for real runs).")
@click.option("--input-size", type=COUNT, default=DEFAULT.input_size, help="Training crop size.")
@click.option("--batch-size", type=COUNT, default=DEFAULT.batch_size, help="Pairs per optimizer step.")
@click.option("--epochs", type=COUNT, default=DEFAULT.epochs, help="Epochs of each encoder/decoder and mask run.")
@click.option("--epoch-snapshots", default=",".join(map(str, DEFAULT.epoch_snapshots)),
              help="Table 1: epochs at which one long run is evaluated (its length is the largest).")
@click.option("--pairs-per-clip", type=COUNT, default=DEFAULT.pairs_per_clip,
              help="Pairs drawn from each clip per epoch (an epoch reads every clip once).")
@click.option("--blr", type=POSITIVE, default=DEFAULT.blr, help="Base learning rate (lr = blr × batch / 256).")
@click.option("--warmup-epochs", type=NON_NEGATIVE, default=DEFAULT.warmup_epochs, help="Linear lr warmup of every run.")
@click.option("--mask-ratio", type=finite(0, 1, min_open=True, max_open=True), default=DEFAULT.mask_ratio,
              help="Mask ratio of the encoder/decoder runs and of Table 1's run (Table 2b varies it).")
@click.option("--gap-min", type=COUNT, default=DEFAULT.gap_range[0], help="Smallest frame gap f1 -> f2.")
@click.option("--gap-max", type=COUNT, default=DEFAULT.gap_range[1], help="Largest frame gap f1 -> f2.")
@click.option("--crop-scale", default=",".join(map(str, DEFAULT.crop_scale)),
              help="LO,HI: area fraction of the frame a training crop covers.")
@click.option("--seed", type=SEED, default=DEFAULT.seed, help="Base seed; each run derives its own from it.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", help="Training device.")
@click.option("--loader", type=click.Choice(["dali", "wds"]), default="dali", help="Pair loader.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=DEFAULT_PROTOCOL,
              help="Label-propagation protocol of every evaluation (as siammae-eval --protocol).")
@click.option("--eval-size", default="toy",
              help="Propagation input size: 'toy' (the training crop's height x 1.5 times it: a patch grid about "
                   "the training grid), HxW, 'native' (frames' own size, floored to 16) or 'protocol' (the "
                   "protocol's own, 480x880 for cropmae: what real runs report).")
def main(shards: Path, davis_root: Path, out: Path, grid: str, model: str, input_size: int, batch_size: int,
         epochs: int, epoch_snapshots: str, pairs_per_clip: int, blr: float, warmup_epochs: float, mask_ratio: float,
         gap_min: int, gap_max: int, crop_scale: str, seed: int, device: str, loader: str, protocol: str,
         eval_size: str) -> None:
    """Train every configuration of a grid, evaluate each checkpoint by label propagation on DAVIS,
    and write OUT/results.json and OUT/report.md. Rerunning continues where it stopped: finished
    runs are not retrained and finished evaluations are not repeated."""
    if not (shards / MANIFEST_NAME).is_file():
        raise UserError(f"{shards}: no {MANIFEST_NAME} (make it with tools/make_shards.py)")
    if not (davis_root / "ImageSets").is_dir():
        raise UserError(f"{davis_root}: not a DAVIS folder (no ImageSets/)")
    if gap_min > gap_max:
        raise UserError(f"--gap-min {gap_min} is larger than --gap-max {gap_max}")
    schedule = Schedule(model=model, input_size=input_size, batch_size=batch_size, epochs=epochs,
                        epoch_snapshots=_snapshots(epoch_snapshots), pairs_per_clip=pairs_per_clip, blr=blr,
                        warmup_epochs=warmup_epochs, mask_ratio=mask_ratio, gap_range=(gap_min, gap_max),
                        crop_scale=_crop_scale(crop_scale), seed=seed)
    settings = _eval_settings(protocol, eval_size, input_size)
    setup = AblationSetup(shards=shards, davis_root=davis_root, out=out, schedule=schedule, settings=settings,
                          device=device, loader=loader)
    runs = build_grid(grid, schedule)  # type: ignore[arg-type]
    header = {"shards": str(shards), "davis_root": str(davis_root), "schedule": dataclasses.asdict(schedule),
              "propagation": settings.to_dict(), "tables": ["encdec", "mask", "epochs"] if grid == "all" else [grid]}
    results_path = out / "results.json"
    with folder_lock(out):                 # each run's folder inside has its own lock, held by its training
        results = run_grid(setup, runs, load_results(results_path, header), results_path)
        write_text_atomic(out / "report.md", render_report(results, runs))
    info(f"wrote {out / 'results.json'} and {out / 'report.md'}")


if __name__ == "__main__":
    main()
