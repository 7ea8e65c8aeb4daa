"""DAVIS-2017 semi-supervised VOS by label propagation: write `OUT/<seq>/<frame>.png`, then score them.

Frames are decoded in a thread pool one sequence ahead and PNGs written in the background
(evaluation.frames), so disk work overlaps the encoder and the propagation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from evaluation.dataset_io import read_frame, read_id_png
from evaluation.davis_io import VOID_ID, DavisSequence, annotation_gap, open_davis
from evaluation.davis_score import SCORE_ON, score_results
from evaluation.davis_submission import submission_name, write_submission
from evaluation.features import FeatureExtractor
from evaluation.frames import IoPool
from evaluation.segmentation import annotation_resize_rule, propagate_ids
from evaluation.settings import PropagationSettings
from siammae_common.console import UserError, progress


def first_annotation(seq: DavisSequence) -> np.ndarray:
    """Frame 0's ids [H, W] with void (255) as background, as the official toolkit reads it."""
    first = read_id_png(seq.masks[0])
    first[first == VOID_ID] = 0
    return first


def propagate_sequence(extractor: FeatureExtractor, seq: DavisSequence, settings: PropagationSettings,
                       frames: np.ndarray | None = None,
                       at_input_size: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """(frame id, predicted ids [H, W] uint8 on settings.device) for every frame of the sequence.

    frames: the decoded frames [T, H, W, 3] if already read. Maps are at the annotation's size, or at
    the protocol's input size with at_input_size.
    """
    first = first_annotation(seq)
    if frames is None:
        frames = np.stack([read_frame(p) for p in seq.frames])
    if frames.shape[1:3] != first.shape:
        raise UserError(f"{seq.frames[0]}: frame size {frames.shape[2]}x{frames.shape[1]} differs from its "
                        f"annotation's {first.shape[1]}x{first.shape[0]}")
    names = [p.stem for p in seq.frames]
    maps = propagate_ids(extractor, frames, first, int(first.max()) + 1, settings, at_input_size, desc=seq.name)
    yield from zip(names, maps)


def run_davis(extractor: FeatureExtractor, davis_root: Path, out_dir: Path, settings: PropagationSettings,
              subset: str = "val", resolution: str = "480p", sequences: Sequence[str] | None = None,
              score_on: str = "native", workers: int | None = None, *, score: bool = True,
              list_file: Path | None = None, all_videos: bool = False) -> dict:
    """Propagate every sequence, write `OUT/<seq>/<frame>.png` and score them; returns the metrics dict.

    score_on "native": results at each sequence's own size, scored against the annotations as the
    official toolkit does; "protocol-size": results at the protocol's input size, scored against the
    annotations resized to it (CropMAE-style tables). workers: scoring processes (default: all cores).
    score=False (a test set, or --no-score): no scoring; the results are zipped for the challenge server.
    """
    if score_on not in SCORE_ON:
        raise ValueError(f"score_on {score_on!r}: expected one of {', '.join(SCORE_ON)}")
    if not score and score_on != "native":
        raise UserError("--score-on protocol-size: a submission holds results at each sequence's own size; "
                        "leave --score-on at native with --no-score or a test subset")
    out_dir = Path(out_dir)
    chosen = open_davis(davis_root, subset, resolution, sequences, list_file, all_videos)
    gaps = [gap for seq in chosen if (gap := annotation_gap(seq)) is not None] if score else []
    if gaps:                                                # before hours of propagation, not after
        raise UserError(gaps[0] + (f" ({len(gaps)} sequences like this)" if len(gaps) > 1 else ""))
    with IoPool() as io:
        pending = io.read_frames(chosen[0].frames, read_frame)
        for k, seq in enumerate(progress(chosen, desc=f"davis {extractor.name}", unit="seq")):
            frames = pending.result()
            if k + 1 < len(chosen):                         # decode the next sequence while this one runs
                pending = io.read_frames(chosen[k + 1].frames, read_frame)
            for frame_id, ids in propagate_sequence(extractor, seq, settings, frames, score_on != "native"):
                io.write_ids(out_dir / seq.name / f"{frame_id}.png", ids)
    summary = {"features": extractor.name, "protocol": settings.protocol}
    if not score:
        archive, pngs = write_submission(out_dir, chosen, submission_name(subset, resolution))
        return {**summary, "subset": subset, "resolution": resolution, "settings": settings.to_dict(),
                "scored": False, "sequences": len(chosen), "frames": pngs, "submission": str(archive)}
    scores = score_results(davis_root, out_dir, subset, resolution, [s.name for s in chosen], score_on=score_on,
                           annotation_resize=annotation_resize_rule(settings), workers=workers)
    return {**summary, "score_on": score_on, "settings": settings.to_dict(), **scores}
