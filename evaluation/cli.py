"""`siammae-eval`: label-propagation evaluation (DAVIS-2017 J&F, JHMDB PCK, VIP mIoU) and DAVIS scoring."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import click
import torch

from evaluation import compare as compare_mod
from evaluation import davis, jhmdb, vip
from evaluation.features import FeatureExtractor, PixelFeatures, checkpoint_features, random_init_features
from evaluation.propagation import PropagationSettings
from evaluation.report import (
    comparison_table,
    davis_global_table,
    davis_sequence_table,
    write_json_atomic,
    write_text_atomic,
)
from siammae_common.console import UserError, info

PATH = click.Path(path_type=Path)
EXISTING = click.Path(path_type=Path, exists=True)


def _size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: expected HxW, e.g. 320x320") from err
    return h, w


def _side(value: str | None) -> int | None:
    if value is None or value.lower() in ("native", "none"):
        return None
    try:
        return int(value)
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: expected a number of pixels or 'native'") from err


def propagation_options(defaults: PropagationSettings) -> Callable:
    """Click options for every PropagationSettings field, with this task's defaults."""
    d = defaults
    options = [
        click.option("--queue", type=int, default=d.queue, show_default=True,
                     help="Previous frames kept as context (the first frame is always added)."),
        click.option("--radius", type=float, default=d.radius, show_default=True, help="Local window, in patches."),
        click.option("--window", type=click.Choice(["circle", "square"]), default=d.window, show_default=True,
                     help="circle: distance < radius (CRW/CropMAE); square: |di|,|dj| <= radius (DINO)."),
        click.option("--window-on-first-frame/--no-window-on-first-frame", default=d.window_on_first_frame,
                     show_default=True, help="Restrict the first frame to the window too (DINO does)."),
        click.option("--topk", type=int, default=d.topk, show_default=True,
                     help="Affinities kept per target patch, over all context frames."),
        click.option("--temperature", type=float, default=d.temperature, show_default=True,
                     help="Softmax temperature on the top-k cosine affinities."),
        click.option("--label-downsample", type=click.Choice(["bilinear", "nearest", "area"]),
                     default=d.label_downsample, show_default=True, help="First-frame labels to the feature grid."),
        click.option("--short-side", default=str(d.short_side) if d.short_side else "native", show_default=True,
                     help="Resize frames so the short side is this many pixels ('native': keep the size)."),
        click.option("--long-side", type=int, default=d.long_side, show_default=True,
                     help="Instead: resize so the long side is this many pixels."),
        click.option("--size", "fixed_size", default="x".join(map(str, d.fixed_size)) if d.fixed_size else None,
                     show_default=True, help="Instead: resize every frame to exactly HxW."),
        click.option("--size-multiple", type=int, default=d.size_multiple, show_default=True,
                     help="The free side(s) are floored to a multiple of this (and of the patch)."),
        click.option("--batch-size", type=int, default=d.batch_size, show_default=True, help="Frames per encoder call."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, or auto."),
    ]

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def feature_options(f: Callable) -> Callable:
    options = [
        click.option("--checkpoint", type=EXISTING, default=None, help="Trained run checkpoint (RUN/checkpoints/latest.pt)."),
        click.option("--random-init", is_flag=True, help="Untrained encoder: the checkpoint's config, or --model."),
        click.option("--model", "model_name", default="vit_small_patch16", show_default=True,
                     help="Model size for --random-init without --checkpoint."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-init weights."),
        click.option("--pixels", is_flag=True, help="Raw-pixel baseline: each patch's pixels, flattened."),
        click.option("--pixel-mode", type=click.Choice(["flatten", "mean"]), default="flatten", show_default=True,
                     help="Pixel features: patch flattened (3·p² dims) or patch mean colour (3 dims)."),
        click.option("--patch-size", type=int, default=16, show_default=True,
                     help="Patch size of the pixel baseline without --checkpoint."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_settings(kw: dict) -> PropagationSettings:
    """Pop the propagation options out of a command's keyword arguments."""
    device = kw.pop("device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    fields = {f.name for f in dataclasses.fields(PropagationSettings)}
    values = {k: kw.pop(k) for k in list(kw) if k in fields}
    values["short_side"] = _side(values["short_side"])
    values["fixed_size"] = _size(values["fixed_size"])
    for name in ("queue", "topk", "batch_size", "size_multiple"):
        if values[name] < (0 if name == "queue" else 1):
            raise UserError(f"--{name.replace('_', '-')} {values[name]}: must be positive")
    if values["temperature"] <= 0 or values["radius"] <= 0:
        raise UserError("--temperature and --radius must be positive")
    return PropagationSettings(device=device, **values)


def build_extractor(kw: dict, device: str) -> FeatureExtractor:
    checkpoint, random_init, pixels = kw.pop("checkpoint"), kw.pop("random_init"), kw.pop("pixels")
    model_name, seed, pixel_mode, patch = kw.pop("model_name"), kw.pop("seed"), kw.pop("pixel_mode"), kw.pop("patch_size")
    if sum([checkpoint is not None and not random_init, random_init, pixels]) != 1:
        raise UserError("choose the features: --checkpoint CKPT, --random-init (with --checkpoint or --model), "
                        "or --pixels")
    if pixels:
        return PixelFeatures(checkpoint_features(checkpoint).patch_size if checkpoint else patch, pixel_mode)
    if random_init:
        config = checkpoint_features(checkpoint).config if checkpoint else None
        return random_init_features(model_name, seed, device, config=config)
    return checkpoint_features(checkpoint, device)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Evaluate a frozen encoder by label propagation, or score DAVIS results as the official toolkit does."""


@main.command("davis")
@click.option("--davis-root", type=EXISTING, required=True, help="DAVIS folder (JPEGImages/, Annotations/, ImageSets/).")
@click.option("--out", type=PATH, required=True, help="Writes OUT/<seq>/<frame>.png, OUT/metrics.json, OUT/report.md.")
@click.option("--subset", default="val", show_default=True, help="ImageSets/2017/<subset>.txt.")
@click.option("--resolution", default="480p", show_default=True, help="Subfolder of JPEGImages/ and Annotations/.")
@click.option("--sequences", default=None, help="Comma-separated sequence names (default: the whole subset).")
@feature_options
@propagation_options(PropagationSettings())
def davis_cmd(davis_root: Path, out: Path, subset: str, resolution: str, sequences: str | None, **kw) -> None:
    """DAVIS-2017 semi-supervised VOS: propagate first-frame masks, write palette PNGs, score them (J&F)."""
    settings = build_settings(kw)
    extractor = build_extractor(kw, settings.device)
    names = sequences.split(",") if sequences else None
    metrics = davis.run_davis(extractor, davis_root, out, settings, subset, resolution, names)
    write_json_atomic(out / "metrics.json", metrics)
    write_text_atomic(out / "report.md", davis_global_table(metrics) + "\n\n" + davis_sequence_table(metrics) + "\n")
    click.echo(davis_global_table(metrics))
    info(f"wrote {out / 'metrics.json'}")


@main.command("davis-score")
@click.option("--davis-root", type=EXISTING, required=True, help="DAVIS folder with the ground truth.")
@click.option("--results", type=EXISTING, required=True, help="Folder of RESULTS/<seq>/<frame>.png (palette ids).")
@click.option("--json", "json_out", type=PATH, default=None, help="Also write the numbers to this JSON file.")
@click.option("--subset", default="val", show_default=True, help="ImageSets/2017/<subset>.txt.")
@click.option("--resolution", default="480p", show_default=True, help="Subfolder of Annotations/.")
@click.option("--sequences", default=None, help="Comma-separated sequence names (default: the whole subset).")
def davis_score_cmd(davis_root: Path, results: Path, json_out: Path | None, subset: str, resolution: str,
                    sequences: str | None) -> None:
    """Score existing result PNGs exactly as davis2017-evaluation's semi-supervised task."""
    names = sequences.split(",") if sequences else None
    metrics = davis.score_results(davis_root, results, subset, resolution, names)
    if json_out is not None:
        write_json_atomic(json_out, metrics)
    click.echo(davis_global_table(metrics) + "\n\n" + davis_sequence_table(metrics))


@main.command("jhmdb")
@click.option("--jhmdb-root", type=EXISTING, required=True, help="JHMDB folder (Rename_Images/, joint_positions/, splits/).")
@click.option("--out", type=PATH, required=True, help="Writes OUT/metrics.json and OUT/joints/<action>/<video>.npy.")
@click.option("--split", type=click.IntRange(1, 3), default=1, show_default=True, help="Test split.")
@feature_options
@propagation_options(jhmdb.DEFAULT_SETTINGS)
def jhmdb_cmd(jhmdb_root: Path, out: Path, split: int, **kw) -> None:
    """JHMDB pose propagation: PCK@0.1 and PCK@0.2 (fractions), per joint type then averaged."""
    settings = build_settings(kw)
    metrics = jhmdb.run_jhmdb(build_extractor(kw, settings.device), jhmdb_root, out, settings, split)
    write_json_atomic(out / "metrics.json", metrics)
    click.echo(f"PCK@0.1 {metrics['PCK@0.1']:.3f}  PCK@0.2 {metrics['PCK@0.2']:.3f}  ({metrics['videos']} videos)")


@main.command("vip")
@click.option("--vip-root", type=EXISTING, required=True, help="VIP folder (Images/, Annotations/Category_ids/).")
@click.option("--out", type=PATH, required=True, help="Writes OUT/<video>/<frame>.png and OUT/metrics.json.")
@feature_options
@propagation_options(vip.DEFAULT_SETTINGS)
def vip_cmd(vip_root: Path, out: Path, **kw) -> None:
    """VIP part propagation: mIoU over 20 classes from one confusion matrix."""
    settings = build_settings(kw)
    metrics = vip.run_vip(build_extractor(kw, settings.device), vip_root, out, settings)
    write_json_atomic(out / "metrics.json", metrics)
    click.echo(f"mIoU {metrics['mIoU']:.3f}  ({metrics['videos']} videos)")


@main.command("compare")
@click.option("--checkpoint", type=EXISTING, required=True, help="Trained run checkpoint (RUN/checkpoints/latest.pt).")
@click.option("--davis-root", type=EXISTING, required=True, help="DAVIS folder (the synthetic one in the demo).")
@click.option("--out", type=PATH, required=True, help="Writes OUT/metrics.json, OUT/report.md, OUT/overlay.png.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-init encoder.")
@click.option("--pixel-mode", type=click.Choice(["flatten", "mean"]), default="flatten", show_default=True)
@click.option("--subset", default="val", show_default=True)
@click.option("--resolution", default="480p", show_default=True)
@propagation_options(compare_mod.COMPARE_SETTINGS)
def compare_cmd(checkpoint: Path, davis_root: Path, out: Path, seed: int, pixel_mode: str, subset: str,
                resolution: str, **kw) -> None:
    """Trained checkpoint vs random-init encoder vs raw pixels on one DAVIS folder; one table."""
    settings = build_settings(kw)
    results = compare_mod.compare_on_davis(checkpoint, davis_root, out, settings, seed, pixel_mode, subset,
                                           resolution)
    click.echo(comparison_table(results, ("J&F-Mean", "J-Mean", "F-Mean")))
    info(f"wrote {out / 'metrics.json'}, {out / 'report.md'}, {out / 'overlay.png'}")



if __name__ == "__main__":
    main()
