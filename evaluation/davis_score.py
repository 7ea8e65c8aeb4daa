"""Score a DAVIS results folder as davis2017-evaluation's semi-supervised task, one process per core.

Each sequence is scored in a worker process (reading its PNGs and computing J and F); the per-object
numbers are then pooled exactly as the official evaluation_method.py does. Only numpy, Pillow and
OpenCV are imported here, so the workers start quickly.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.dataset_io import read_id_png
from evaluation.davis_io import DavisSequence, open_davis, read_annotations, read_results
from evaluation.davis_metrics import ObjectScore, score_sequence, summarise
from evaluation.nearest import resize_ids
from siammae_common.console import UserError, progress
from siammae_common.process_tree import init_worker

SCORE_ON: tuple[str, ...] = ("native", "protocol-size")


@dataclass(frozen=True)
class ScoreJob:
    """One sequence to score: where its results are and at which size to compare."""

    seq: DavisSequence
    results_dir: Path
    score_on: str = "native"
    annotation_resize: str = "nearest"      # protocol-size: how the annotations are brought to the results' size


def score_one(job: ScoreJob) -> tuple[str, np.ndarray, np.ndarray]:
    """(sequence name, J [objects, frames], F [objects, frames]) over frames 1..T-2."""
    seq = job.seq
    gt, n_objects = read_annotations(seq)
    gt, frame_ids = gt[1:-1], seq.frame_ids[1:-1]
    if job.score_on == "protocol-size" and frame_ids:
        size = read_id_png(Path(job.results_dir) / seq.name / f"{frame_ids[0]}.png").shape
        gt = resize_ids(gt, size, job.annotation_resize)
    results = read_results(job.results_dir, seq, frame_ids, gt.shape[1:], n_objects)
    j, f = score_sequence(gt, results, n_objects)
    return seq.name, j, f


def _init_scorer(parent_pid: int) -> None:
    """A scoring worker: dies with siammae-eval (siammae_common.process_tree), one OpenCV thread."""
    import cv2

    init_worker(parent_pid)
    cv2.setNumThreads(1)


def score_results(davis_root: Path, results_dir: Path, subset: str = "val", resolution: str = "480p",
                  sequences: Sequence[str] | None = None, score_on: str = "native",
                  annotation_resize: str = "nearest", workers: int | None = None) -> dict:
    """The official semi-supervised numbers for a results folder (first and last frames excluded).

    score_on "native" compares with the annotations as they are (the official protocol);
    "protocol-size" first resizes them (nearest, `annotation_resize` rule) to the results' size.
    workers: processes scoring sequences in parallel (default: every core; 1 = in this process).
    """
    if score_on not in SCORE_ON:
        raise ValueError(f"score_on {score_on!r}: expected one of {', '.join(SCORE_ON)}")
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: no such results folder")
    chosen = open_davis(davis_root, subset, resolution, sequences)
    jobs = [ScoreJob(seq, results_dir, score_on, annotation_resize) for seq in chosen]
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    bar = progress(total=len(jobs), desc="davis-score", unit="seq")
    scored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if workers <= 1:
        for job in jobs:
            name, j, f = score_one(job)
            scored[name] = (j, f)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")      # no fork of a process that may hold torch threads
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_scorer,
                                 initargs=(os.getpid(),)) as pool:
            for name, j, f in pool.map(score_one, jobs):
                scored[name] = (j, f)
                bar.update()
    bar.close()
    per_object: dict[str, ObjectScore] = {}
    for seq in chosen:                                      # the official order: sequences, then objects
        j, f = scored[seq.name]
        for k in range(j.shape[0]):
            per_object[f"{seq.name}_{k + 1}"] = ObjectScore(j[k], f[k])
    return summarise(per_object)
