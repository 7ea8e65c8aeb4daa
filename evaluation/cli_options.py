"""siammae-eval's shared options: the protocol and its per-setting overrides, and the feature extractor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import torch

from evaluation.features import FeatureExtractor, PixelFeatures, checkpoint_features, random_init_features
from evaluation.nearest import NEAREST_RULES
from evaluation.settings import (
    DEFAULT_PROTOCOL,
    LABEL_DOWNSAMPLES,
    PROTOCOLS,
    PropagationSettings,
    protocol_settings,
)
from siammae_common.cli_types import COUNT, NATURAL, POSITIVE, SEED, pixel_size
from siammae_common.console import UserError

EXISTING = click.Path(path_type=Path, exists=True)
SIZE_KEYS = ("short_side", "long_side", "fixed_size")
DEFAULT = "(protocol's)"


def _size(value: str | None) -> tuple[int, int] | None:
    return None if value is None else pixel_size(value, "--size")


def _side(value: str | None) -> int | str | None:
    if value is None or value.lower() in ("native", "none"):
        return "native" if value is not None else None
    try:
        return int(value)
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: expected a number of pixels or 'native'") from err


def _flag(name: str, help_text: str) -> Callable:
    return click.option(f"--{name}/--no-{name}", default=None, help=f"{help_text} [default: {DEFAULT}]")


def propagation_options(pose: bool = False) -> Callable:
    """Click options: --protocol, an override for every setting (default: the protocol's), --device."""
    options = [
        click.option("--protocol", type=click.Choice(PROTOCOLS), default=DEFAULT_PROTOCOL, show_default=True,
                     help="Named protocol fixing every setting below: cropmae (CRW/CropMAE code, the SiamMAE "
                          "lineage) or dino (DINO's eval_video_segmentation.py)."),
        click.option("--queue", type=NATURAL, default=None, help=f"Short-term context frames. [default: {DEFAULT}]"),
        _flag("pad-first-frame", "Before the start, copies of frame 0 fill the short-term context (CRW)."),
        click.option("--radius", type=POSITIVE, default=None, help=f"Local window, in patches. [default: {DEFAULT}]"),
        click.option("--window", type=click.Choice(["circle", "square"]), default=None,
                     help=f"circle: distance < radius; square: |di|,|dj| <= radius. [default: {DEFAULT}]"),
        _flag("window-on-first-frame", "Restrict the first frame to the window too (DINO does)."),
        click.option("--topk", type=COUNT, default=None, help=f"Affinities kept per target patch. [default: {DEFAULT}]"),
        _flag("keep-ties", "Also keep every affinity tied with the k-th (DINO)."),
        click.option("--temperature", type=POSITIVE, default=None, help=f"Softmax temperature. [default: {DEFAULT}]"),
        _flag("labels-at-input-size", "Resize the annotation to the input size (nearest) before one-hot."),
        click.option("--label-downsample", type=click.Choice(LABEL_DOWNSAMPLES), default=None,
                     help=f"One-hot labels to the feature grid. [default: {DEFAULT}]"),
        _flag("norm-mask", "Min-max normalise each upsampled label channel before the argmax (DINO)."),
        click.option("--output-resize", type=click.Choice(NEAREST_RULES), default=None,
                     help=f"Argmax at the input size to the annotation's size. [default: {DEFAULT}]"),
        click.option("--first-frame-output", type=click.Choice(["round-trip", "ground-truth"]), default=None,
                     help=f"Frame 0's output. [default: {DEFAULT}]"),
        click.option("--short-side", default=None,
                     help="Resize frames so the short side is this many pixels, or 'native'. Any of "
                          f"--short-side/--long-side/--size replaces the protocol's input size. [default: {DEFAULT}]"),
        click.option("--long-side", type=COUNT, default=None, help="Instead: the long side to this many pixels."),
        click.option("--size", "fixed_size", default=None, help="Instead: every frame to exactly HxW."),
        click.option("--size-multiple", type=COUNT, default=None,
                     help=f"The free side(s) floored to a multiple of this. [default: {DEFAULT}]"),
        _flag("resize-uint8", "Round resized frames to 8-bit levels (DINO resizes uint8 images)."),
        click.option("--batch-size", type=COUNT, default=8, show_default=True, help="Frames per encoder call."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, or auto."),
    ]
    if pose:
        options += [
            click.option("--pose-placement", type=click.Choice(["int", "floor"]), default=None,
                         help=f"Gaussian corner rounding. [default: {DEFAULT}]"),
            click.option("--pose-topk", type=COUNT, default=None, help=f"Cells per joint decoded. [default: {DEFAULT}]"),
        ]

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def build_settings(kw: dict, task: str) -> PropagationSettings:
    """Pop --protocol, the overrides and --device out of a command's keyword arguments."""
    device = kw.pop("device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    protocol = kw.pop("protocol")
    names = ["queue", "pad_first_frame", "radius", "window", "window_on_first_frame", "topk", "keep_ties", "temperature",
             "labels_at_input_size", "label_downsample", "norm_mask", "output_resize", "first_frame_output",
             "short_side", "long_side", "fixed_size", "size_multiple", "resize_uint8", "batch_size",
             "pose_placement", "pose_topk"]
    given = {k: kw.pop(k) for k in names if k in kw}
    overrides = {k: v for k, v in given.items() if v is not None}
    if "short_side" in overrides:
        overrides["short_side"] = _side(overrides["short_side"])
    if "fixed_size" in overrides:
        overrides["fixed_size"] = _size(overrides["fixed_size"])
    if any(k in overrides for k in SIZE_KEYS):          # an explicit size replaces the protocol's
        overrides = {**{k: None for k in SIZE_KEYS}, **overrides}
        if overrides["short_side"] == "native":
            overrides["short_side"] = None
    try:
        return protocol_settings(protocol, task, device=device, **overrides)
    except ValueError as err:
        raise UserError(f"propagation settings: {err}") from err


def feature_options(f: Callable) -> Callable:
    """Click options choosing the features: a checkpoint, a random-init encoder, or raw pixels."""
    options = [
        click.option("--checkpoint", type=EXISTING, default=None, help="Trained run checkpoint (RUN/checkpoints/latest.pt)."),
        click.option("--random-init", is_flag=True, help="Untrained encoder: the checkpoint's config, or --model."),
        click.option("--model", "model_name", default="vit_small_patch16", show_default=True,
                     help="Model size for --random-init without --checkpoint."),
        click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random-init weights."),
        click.option("--pixels", is_flag=True, help="Raw-pixel baseline: each patch's pixels, flattened."),
        click.option("--pixel-mode", type=click.Choice(["flatten", "mean"]), default="flatten", show_default=True,
                     help="Pixel features: patch flattened (3·p² dims) or patch mean colour (3 dims)."),
        click.option("--patch-size", type=COUNT, default=16, show_default=True,
                     help="Patch size of the pixel baseline without --checkpoint."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_extractor(kw: dict, device: str) -> FeatureExtractor:
    """Pop the feature options and build the extractor they name (exactly one kind)."""
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


def video_set_options(what: str, own: str) -> Callable:
    """--list FILE and --all-videos: which videos to evaluate when not the benchmark's own list `own`."""
    def decorate(f: Callable) -> Callable:
        f = click.option("--all-videos", is_flag=True,
                         help=f"Without {own}: evaluate every one of the {what} (training ones included).")(f)
        return click.option("--list", "list_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                            default=None,
                            help=f"Evaluate the {what} of this list instead of {own}: a name per line, or the "
                                 "two-path lines of CRW's, UVC's and CropMAE's list files.")(f)
    return decorate

