#!/usr/bin/env python
"""The demo's evaluation: what a few CPU minutes of SiamMAE training taught the encoder, in three views.

    python tools/demo_eval.py --checkpoint runs/demo/checkpoints/latest.pt \
        --davis-root data/synthetic/DAVIS --out runs/demo/eval

1. Hidden patches: on held-out clips, the error on f2's hidden patches of the trained model, of copying
   f1's patch at the same place, and of predicting the mean (evaluation.hidden_patch).
2. Label propagation at the toy's own scale: the cropmae protocol with the input sized so the patch grid
   is the training grid made 1.5x wider (64x96 for 64-pixel crops of patch 8): trained vs random init
   (same architecture and settings, untrained; seeds 0, 1, 2) vs raw pixels, on every sequence.
3. Label propagation at the frames' own size and at the full cropmae protocol (480x880): trained vs
   random init (seed 0), and pixels at the frames' own size, on the first few sequences (these sizes cost
   minutes per sequence on a CPU; --view3-sequences sets how many).

Each propagation is one job; jobs run in two processes of one thread each (for these small tensors that
is several times faster than one process of two threads). A job whose metrics.json holds the same
settings, sequences, model and checkpoint is kept, so a rerun continues where an interrupted one stopped.
Writes OUT/views.json, OUT/report.md and its figures (tools/demo_report.py).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import click
import torch

if __package__ in (None, ""):                      # run by path: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.davis import run_davis
from evaluation.davis_io import open_davis
from evaluation.features import PixelFeatures, checkpoint_features, random_init_features
from evaluation.hidden_patch import PairSpec, held_out_pairs, hidden_patch_errors
from evaluation.report import write_json_atomic
from evaluation.settings import PropagationSettings, protocol_settings
from model.checkpoint import load_model
from siammae_common.cli_types import COUNT, NATURAL, OneLineCommand
from siammae_common.console import UserError, info
from tools.demo_report import write_report

UNTRAINED_SEEDS = (0, 1, 2)
VIEW3_SEQUENCES = 2


@dataclass(frozen=True)
class Job:
    """One propagation: a view, a feature extractor, the protocol's settings, the sequences."""

    view: str                          # "view2" | "view3-native" | "view3-protocol"
    features: str                      # "trained" | "random-init-<seed>" | "pixels"
    settings: PropagationSettings
    sequences: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"{self.view}/{self.features}"


def toy_scale_size(input_size: int) -> tuple[int, int]:
    """View 2's input (H, W): the training crop's height, 1.5x as wide (the training grid is square)."""
    return input_size, input_size * 3 // 2


def plan_jobs(config, sequences: list[str], view3_sequences: int) -> list[Job]:
    """Every propagation of views 2 and 3, the costliest first (two processes share them)."""
    p = config.patch_size
    untrained = [f"random-init-{s}" for s in UNTRAINED_SEEDS]
    view2 = protocol_settings(fixed_size=toy_scale_size(config.input_size))
    native = protocol_settings(fixed_size=None, size_multiple=p)
    full = protocol_settings()
    first = tuple(sequences[:view3_sequences])
    # pixels at 480x880 (3p^2 = 768 numbers a patch) would cost more than the rest of the evaluation
    # together; at the frames' own size they are cheap
    view3 = [("view3-protocol", full, ("trained", untrained[0])), ("view3-native", native, ("trained", untrained[0], "pixels"))]
    jobs = [Job(view, name, settings, first) for view, settings, names in view3 for name in names] if first else []
    return jobs + [Job("view2", name, view2, tuple(sequences)) for name in ("pixels", "trained", *untrained)]


def job_key(job: Job, config, checkpoint: Path) -> dict:
    """What a job's result depends on; a kept result is reused only if its key is the same."""
    key = {"settings": job.settings.to_dict(), "sequences": list(job.sequences), "model": config.to_dict()}
    if job.features == "trained":
        stat = checkpoint.stat()
        key["checkpoint"] = {"path": str(checkpoint.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return json.loads(json.dumps(key))               # tuples as lists, as read back from JSON


def make_extractor(features: str, checkpoint: Path | None, config):
    """The named feature extractor: the checkpoint's encoder ("trained"), an untrained one of its
    architecture ("random-init-SEED"), pixels ("pixels"); `checkpoint` is read only for "trained"."""
    if features == "trained":
        return checkpoint_features(checkpoint)
    if features.startswith("random-init-"):
        return random_init_features(config=config, seed=int(features.rsplit("-", 1)[1]))
    return PixelFeatures(config.patch_size, "flatten")


def kept_result(job: Job, config, checkpoint: Path, out: Path) -> dict | None:
    """The job's metrics from an earlier run with the same key, else None."""
    kept = out / job.folder / "metrics.json"
    if kept.is_file():
        old = json.loads(kept.read_text())
        if old.get("key") == job_key(job, config, checkpoint):
            return old | {"kept": True}
    return None


def run_job(job: Job, checkpoint: Path, config, davis_root: Path, out: Path) -> dict:
    """Propagate and score one job (in a worker process) with the checkpoint's model config; writes
    OUT/<view>/<features>/metrics.json."""
    torch.set_num_threads(1)
    key, folder = job_key(job, config, checkpoint), out / job.folder
    start = time.perf_counter()
    metrics = run_davis(make_extractor(job.features, checkpoint, config), davis_root, folder, job.settings,
                        sequences=list(job.sequences), workers=1)
    metrics |= {"key": key, "seconds": time.perf_counter() - start}
    write_json_atomic(folder / "metrics.json", metrics)
    return metrics


def run_jobs(jobs: list[Job], checkpoint: Path, davis_root: Path, out: Path, workers: int,
             config) -> dict[str, dict]:
    """Every job not kept from an earlier run, in `workers` processes (spawned: no fork of a process
    holding torch's threads); one line per job as it finishes."""
    results: dict[str, dict] = {}

    def report(job: Job, metrics: dict) -> None:
        results[job.folder] = metrics
        how = "kept" if metrics.get("kept") else f"{metrics['seconds']:.0f} s"
        info(f"[{len(results)}/{len(jobs)}] {job.view} {job.features}: J&F {metrics['J&F-Mean']:.3f} ({how})")

    todo = []
    for job in jobs:
        kept = kept_result(job, config, checkpoint, out)
        if kept:
            report(job, kept)
        else:
            todo.append(job)
    if todo:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
            futures = {pool.submit(run_job, job, checkpoint, config, davis_root, out): job for job in todo}
            for future in as_completed(futures):
                report(futures[future], future.result())
    return {job.folder: results[job.folder] for job in jobs}


def view1(model, config, davis_root: Path, gap_range: tuple[int, int]) -> dict:
    """View 1 on held-out pairs of the DAVIS-layout set: the trained model vs copy-f1 vs mean."""
    spec = PairSpec(crop=0, size=config.input_size, gap_range=gap_range)
    f1, f2 = held_out_pairs(davis_root, spec)
    return hidden_patch_errors(model, f1, f2).to_dict() | {"gap_range": list(gap_range)}


def evaluate(checkpoint: Path, davis_root: Path, out: Path, view3_sequences: int = VIEW3_SEQUENCES,
             workers: int = 2) -> dict:
    """All three views of one checkpoint; writes OUT/views.json and the report; returns the views."""
    run_config = json.loads((checkpoint.parent.parent / "config.json").read_text())
    model, config = load_model(checkpoint)
    sampling = run_config["train"]["sampling"]
    gap_range = (int(sampling["gap_min"]), int(sampling["gap_max"]))
    sequences = [s.name for s in open_davis(davis_root)]
    torch.set_num_threads(1)
    info("view 1: hidden-patch error on held-out pairs")
    views = {"view1": view1(model, config, davis_root, gap_range)}
    jobs = plan_jobs(config, sequences, view3_sequences)
    info(f"views 2 and 3: {len(jobs)} propagations in {workers} processes")
    views["propagation"] = run_jobs(jobs, checkpoint, davis_root, out, workers, config)
    views |= {"checkpoint": str(checkpoint), "davis_root": str(davis_root), "model": config.to_dict(),
              "sequences": len(sequences), "view3_sequences": list(jobs[0].sequences) if view3_sequences else []}
    write_json_atomic(out / "views.json", views)
    write_report(views, checkpoint, davis_root, out)
    return views


@click.command(cls=OneLineCommand)
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="The trained run's checkpoint (RUN/checkpoints/latest.pt).")
@click.option("--davis-root", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="A DAVIS-layout folder the model never trained on.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Writes OUT/views.json, OUT/report.md, figures, and one folder per propagation.")
@click.option("--view3-sequences", type=NATURAL, default=VIEW3_SEQUENCES, show_default=True,
              help="Sequences of view 3 (frames' own size and 480x880; 0 skips it).")
@click.option("--num-workers", "--workers", "workers", type=COUNT, default=2, show_default=True, help="Processes.")
def main(checkpoint: Path, davis_root: Path, out: Path, view3_sequences: int, workers: int) -> None:
    """Views 1-3 of the demo for one checkpoint, against untrained encoders and raw pixels."""
    if not (checkpoint.parent.parent / "config.json").is_file():
        raise UserError(f"{checkpoint}: not inside a run folder (no {checkpoint.parent.parent / 'config.json'})")
    start = time.perf_counter()
    evaluate(checkpoint, davis_root, out, view3_sequences, workers)
    info(f"evaluation: {time.perf_counter() - start:.0f} s; report {out / 'report.md'}")


if __name__ == "__main__":
    main()
