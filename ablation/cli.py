"""siammae-ablate: the seed report's experiments (Tables 1, 2a, 2b) as one resumable command."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ablation.grid import Schedule, build_grid
from ablation.report import render_report
from ablation.runner import AblationSetup, load_results, run_grid
from evaluation.compare import COMPARE_SETTINGS
from evaluation.report import write_text_atomic
from pipeline.shard_format import MANIFEST_NAME
from siammae_common.console import UserError, info

DEFAULT = Schedule()


def _snapshots(value: str) -> tuple[int, ...]:
    try:
        epochs = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated epochs, e.g. 3,5,10,25") from None
    if not epochs or epochs[0] < 1:
        raise click.BadParameter(f"{value!r}: epochs must be positive")
    return epochs


@click.command(context_settings={"show_default": True, "help_option_names": ["-h", "--help"]})
@click.option("--shards", type=click.Path(path_type=Path), required=True, help="Shards folder (make_shards output).")
@click.option("--davis-root", type=click.Path(path_type=Path), required=True,
              help="DAVIS-2017-layout folder used to evaluate every checkpoint.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Grid folder: one run folder per configuration, results.json, report.md.")
@click.option("--grid", type=click.Choice(["encdec", "mask", "epochs", "all"]), default="all",
              help="Which of the report's tables to reproduce.")
@click.option("--model", default=DEFAULT.model, help="Model size for every run (e.g. vit_tiny_patch16 for real runs).")
@click.option("--input-size", type=int, default=DEFAULT.input_size, help="Training crop size.")
@click.option("--batch-size", type=int, default=DEFAULT.batch_size, help="Pairs per optimizer step.")
@click.option("--epochs", type=int, default=DEFAULT.epochs, help="Epochs of each encoder/decoder and mask run.")
@click.option("--epoch-snapshots", default=",".join(map(str, DEFAULT.epoch_snapshots)),
              help="Table 1: epochs at which one long run is evaluated (its length is the largest).")
@click.option("--pairs-per-clip", type=int, default=DEFAULT.pairs_per_clip,
              help="Pairs drawn from each clip per epoch (an epoch reads every clip once).")
@click.option("--blr", type=float, default=DEFAULT.blr, help="Base learning rate (lr = blr × batch / 256).")
@click.option("--warmup-epochs", type=float, default=DEFAULT.warmup_epochs, help="Linear lr warmup of every run.")
@click.option("--seed", type=int, default=DEFAULT.seed, help="Base seed; each run derives its own from it.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", help="Training device.")
@click.option("--loader", type=click.Choice(["dali", "wds"]), default="dali", help="Pair loader.")
@click.option("--eval-short-side", type=int, default=None,
              help="Resize DAVIS frames to this short side for propagation (default: their own size).")
def main(shards: Path, davis_root: Path, out: Path, grid: str, model: str, input_size: int, batch_size: int,
         epochs: int, epoch_snapshots: str, pairs_per_clip: int, blr: float, warmup_epochs: float, seed: int,
         device: str, loader: str,
         eval_short_side: int | None) -> None:
    """Train every configuration of a grid, evaluate each checkpoint by label propagation on DAVIS,
    and write OUT/results.json and OUT/report.md. Rerunning continues where it stopped: finished
    runs are not retrained and finished evaluations are not repeated."""
    if not (shards / MANIFEST_NAME).is_file():
        raise UserError(f"{shards}: no {MANIFEST_NAME} (make it with tools/make_shards.py)")
    if not (davis_root / "ImageSets").is_dir():
        raise UserError(f"{davis_root}: not a DAVIS folder (no ImageSets/)")
    schedule = Schedule(model=model, input_size=input_size, batch_size=batch_size, epochs=epochs,
                        epoch_snapshots=_snapshots(epoch_snapshots), pairs_per_clip=pairs_per_clip, blr=blr,
                        warmup_epochs=warmup_epochs, seed=seed)
    settings = dataclasses.replace(COMPARE_SETTINGS, short_side=eval_short_side) if eval_short_side else COMPARE_SETTINGS
    setup = AblationSetup(shards=shards, davis_root=davis_root, out=out, schedule=schedule, settings=settings,
                          device=device, loader=loader)
    runs = build_grid(grid, schedule)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    header = {"shards": str(shards), "davis_root": str(davis_root), "schedule": dataclasses.asdict(schedule),
              "propagation": settings.to_dict(), "tables": ["encdec", "mask", "epochs"] if grid == "all" else [grid]}
    results_path = out / "results.json"
    results = run_grid(setup, runs, load_results(results_path, header), results_path)
    write_text_atomic(out / "report.md", render_report(results, runs))
    info(f"wrote {out / 'results.json'} and {out / 'report.md'}")


if __name__ == "__main__":
    main()
