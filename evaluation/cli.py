"""`siammae-eval`: label-propagation evaluation (DAVIS-2017 J&F, JHMDB PCK, VIP mIoU) and DAVIS scoring."""

from __future__ import annotations

from pathlib import Path

import click

from evaluation import compare as compare_mod
from evaluation import davis, jhmdb, vip
from evaluation.cli_options import (
    EXISTING,
    build_extractor,
    build_settings,
    feature_options,
    propagation_options,
    video_set_options,
)
from evaluation.davis_score import SCORE_ON, score_results
from evaluation.davis_submission import TEST_SUBSETS
from evaluation.report import (
    comparison_table,
    davis_global_table,
    davis_sequence_table,
    settings_line,
    write_json_atomic,
)
from evaluation.segmentation import annotation_resize_rule
from evaluation.settings import DEFAULT_PROTOCOL, PROTOCOLS, protocol_settings
from evaluation.video_lists import find_root
from siammae_common.atomic import write_text_atomic
from siammae_common.cli_types import COUNT, SEED, OneLineGroup
from siammae_common.console import info
from siammae_common.folder_lock import folder_lock

PATH = click.Path(path_type=Path)
SCORE_ON_HELP = ("native: the official protocol, results at each sequence's own size; protocol-size: results "
                 "and annotations (resized, nearest) at the protocol's input size, as CropMAE's tables.")


def davis_root_of(path: Path) -> Path:
    """--davis-root as given, or the DAVIS/ folder inside it (where the archives extract to)."""
    return find_root(path, "JPEGImages", ("DAVIS",), "DAVIS")


def score_options(f):
    """--score-on and --num-workers (scoring processes; --workers, the older name, works too)."""
    f = click.option("--num-workers", "--workers", "workers", type=COUNT, default=None,
                     help="Scoring processes (default: every core).")(f)
    return click.option("--score-on", type=click.Choice(SCORE_ON), default="native", show_default=True,
                        help=SCORE_ON_HELP)(f)


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Evaluate a frozen encoder by label propagation, or score DAVIS results as the official toolkit does."""


@main.command("davis")
@click.option("--davis-root", type=EXISTING, required=True,
              help="DAVIS folder (JPEGImages/, Annotations/, ImageSets/), or the folder holding DAVIS/.")
@click.option("--out", type=PATH, required=True, help="Writes OUT/<seq>/<frame>.png, OUT/metrics.json, OUT/report.md.")
@click.option("--subset", default="val", show_default=True,
              help="ImageSets/2017/<subset>.txt: train, val, or test-dev / test-challenge (a submission, see --no-score).")
@click.option("--resolution", default="480p", show_default=True,
              help="Subfolder of JPEGImages/ and Annotations/: 480p or Full-Resolution.")
@click.option("--sequences", default=None, help="Comma-separated sequence names (default: the whole subset).")
@click.option("--no-score", is_flag=True,
              help="Do not score: zip the result PNGs for the DAVIS challenge server (always so for test-dev and "
                   "test-challenge, whose frames after the first are not annotated).")
@video_set_options("sequences", "ImageSets/2017/<subset>.txt")
@feature_options
@propagation_options()
@score_options
def davis_cmd(davis_root: Path, out: Path, subset: str, resolution: str, sequences: str | None, no_score: bool,
              list_file: Path | None, all_videos: bool, score_on: str, workers: int | None, **kw) -> None:
    """DAVIS-2017 semi-supervised VOS: propagate first-frame masks, write palette PNGs, score them (J&F)."""
    settings = build_settings(kw, "davis")
    extractor = build_extractor(kw, settings.device)
    names = sequences.split(",") if sequences else None
    score = not no_score and subset not in TEST_SUBSETS
    with folder_lock(out):
        metrics = davis.run_davis(extractor, davis_root_of(davis_root), out, settings, subset, resolution, names,
                                  score_on, workers, score=score, list_file=list_file, all_videos=all_videos)
        if not score:
            write_json_atomic(out / "submission.json", metrics)
            info(f"wrote {metrics['submission']}: {metrics['sequences']} sequences, {metrics['frames']} PNGs in the "
                 "DAVIS challenge layout (sequence folders at the top, one indexed PNG per frame). Not scored here: "
                 "the DAVIS challenge's evaluation server scores it (upload the zip as a semi-supervised submission)"
                 + (f"; it scores 480p results, these are {resolution}" if resolution != "480p" else ""))
            return
        write_json_atomic(out / "metrics.json", metrics)
        write_text_atomic(out / "report.md", davis_global_table(metrics) + "\n\n" + settings_line(metrics) + "\n\n"
                          + davis_sequence_table(metrics) + "\n")
    click.echo(davis_global_table(metrics))
    info(f"wrote {out / 'metrics.json'}")


@main.command("davis-score")
@click.option("--davis-root", type=EXISTING, required=True, help="DAVIS folder with the ground truth.")
@click.option("--results", type=EXISTING, required=True, help="Folder of RESULTS/<seq>/<frame>.png (palette ids).")
@click.option("--json", "json_out", type=PATH, default=None, help="Also write the numbers to this JSON file.")
@click.option("--subset", default="val", show_default=True, help="ImageSets/2017/<subset>.txt.")
@click.option("--resolution", default="480p", show_default=True, help="Subfolder of Annotations/.")
@click.option("--sequences", default=None, help="Comma-separated sequence names (default: the whole subset).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=DEFAULT_PROTOCOL, show_default=True,
              help="With --score-on protocol-size: the protocol whose annotation resize is used.")
@score_options
def davis_score_cmd(davis_root: Path, results: Path, json_out: Path | None, subset: str, resolution: str,
                    sequences: str | None, protocol: str, score_on: str, workers: int | None) -> None:
    """Score existing result PNGs exactly as davis2017-evaluation's semi-supervised task."""
    names = sequences.split(",") if sequences else None
    rule = annotation_resize_rule(protocol_settings(protocol))
    metrics = score_results(davis_root_of(davis_root), results, subset, resolution, names, score_on, rule, workers)
    metrics = {"score_on": score_on, **({"protocol": protocol} if score_on != "native" else {}), **metrics}
    if json_out is not None:
        write_json_atomic(json_out, metrics)
    click.echo(davis_global_table(metrics) + "\n\n" + davis_sequence_table(metrics))


@main.command("jhmdb")
@click.option("--jhmdb-root", type=EXISTING, required=True,
              help="JHMDB folder (Rename_Images/, joint_positions/, splits/), or the folder holding JHMDB/.")
@click.option("--out", type=PATH, required=True, help="Writes OUT/metrics.json and OUT/joints/<action>/<video>.npy.")
@click.option("--split", type=click.IntRange(1, 3), default=1, show_default=True, help="Test split.")
@video_set_options("videos", "splits/<action>_test_split<N>.txt")
@feature_options
@propagation_options(pose=True)
def jhmdb_cmd(jhmdb_root: Path, out: Path, split: int, list_file: Path | None, all_videos: bool, **kw) -> None:
    """JHMDB pose propagation: PCK@0.1 and PCK@0.2 (fractions), per joint type then averaged."""
    settings = build_settings(kw, "jhmdb")
    root = find_root(jhmdb_root, "Rename_Images", ("JHMDB",), "JHMDB")
    extractor = build_extractor(kw, settings.device)
    with folder_lock(out):
        metrics = jhmdb.run_jhmdb(extractor, root, out, settings, split,
                                  list_file=list_file, all_videos=all_videos)
        write_json_atomic(out / "metrics.json", metrics)
    click.echo(f"PCK@0.1 {metrics['PCK@0.1']:.3f}  PCK@0.2 {metrics['PCK@0.2']:.3f}  ({metrics['videos']} videos)")


@main.command("vip")
@click.option("--vip-root", type=EXISTING, required=True,
              help="VIP_Fine/ (Images/, Annotations/Category_ids/, lists/), or the folder holding it.")
@click.option("--out", type=PATH, required=True, help="Writes OUT/<video>/<frame>.png and OUT/metrics.json.")
@video_set_options("videos", "lists/val_videos.txt")
@feature_options
@propagation_options()
def vip_cmd(vip_root: Path, out: Path, list_file: Path | None, all_videos: bool, **kw) -> None:
    """VIP part propagation: mIoU over 20 classes from one confusion matrix."""
    settings = build_settings(kw, "vip")
    root = find_root(vip_root, "Images", ("VIP_Fine",), "VIP")
    extractor = build_extractor(kw, settings.device)
    with folder_lock(out):
        metrics = vip.run_vip(extractor, root, out, settings, list_file=list_file, all_videos=all_videos)
        write_json_atomic(out / "metrics.json", metrics)
    click.echo(f"mIoU {metrics['mIoU']:.3f}  ({metrics['videos']} videos)")


@main.command("compare")
@click.option("--checkpoint", type=EXISTING, required=True, help="Trained run checkpoint (RUN/checkpoints/latest.pt).")
@click.option("--davis-root", type=EXISTING, required=True, help="DAVIS folder (the synthetic one in the demo).")
@click.option("--out", type=PATH, required=True, help="Writes OUT/metrics.json, OUT/report.md, OUT/overlay.png.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random-init encoder.")
@click.option("--pixel-mode", type=click.Choice(["flatten", "mean"]), default="flatten", show_default=True)
@click.option("--subset", default="val", show_default=True)
@click.option("--resolution", default="480p", show_default=True)
@propagation_options()
@score_options
def compare_cmd(checkpoint: Path, davis_root: Path, out: Path, seed: int, pixel_mode: str, subset: str,
                resolution: str, score_on: str, workers: int | None, **kw) -> None:
    """Trained checkpoint vs random-init encoder vs raw pixels on one DAVIS folder; one table."""
    settings = build_settings(kw, "davis")
    with folder_lock(out):
        results = compare_mod.compare_on_davis(checkpoint, davis_root_of(davis_root), out, settings, seed, pixel_mode,
                                               subset, resolution, score_on=score_on, workers=workers)
    click.echo(comparison_table(results, ("J&F-Mean", "J-Mean", "F-Mean")))
    info(f"wrote {out / 'metrics.json'}, {out / 'report.md'}, {out / 'overlay.png'}")


if __name__ == "__main__":
    main()
