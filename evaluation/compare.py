"""Trained checkpoint vs random-init encoder vs raw pixels on one DAVIS folder: metrics, table, figure.

Writes OUT/<name>/<seq>/<frame>.png and OUT/<name>/metrics.json per extractor, then OUT/metrics.json
({"trained": {...}, "random_init": {...}, "pixels": {...}}), OUT/report.md and OUT/overlay.png.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.dataset_io import read_frame, read_id_png
from evaluation.davis import run_davis
from evaluation.davis_io import open_davis
from evaluation.features import PixelFeatures, checkpoint_features, random_init_features
from evaluation.nearest import resize_ids
from evaluation.report import (
    comparison_table,
    davis_global_table,
    davis_sequence_table,
    overlay,
    overlay_figure,
    settings_line,
    write_json_atomic,
)
from evaluation.settings import PropagationSettings, protocol_settings
from siammae_common.atomic import write_text_atomic


def compare_on_davis(checkpoint: Path, davis_root: Path, out_dir: Path,
                     settings: PropagationSettings | None = None, seed: int = 0,
                     pixel_mode: str = "flatten", subset: str = "val", resolution: str = "480p",
                     sequences: Sequence[str] | None = None, score_on: str = "native",
                     workers: int | None = None) -> dict:
    """Evaluate the three extractors with the same settings (default: the default protocol's);
    returns {name: davis metrics}."""
    settings = settings or protocol_settings()
    out_dir = Path(out_dir)
    trained = checkpoint_features(checkpoint, settings.device)
    extractors = [trained,
                  random_init_features(config=trained.config, seed=seed, device=settings.device),
                  PixelFeatures(trained.patch_size, pixel_mode)]
    results: dict[str, dict] = {}
    for extractor in extractors:
        name = "pixels" if isinstance(extractor, PixelFeatures) else extractor.name
        metrics = run_davis(extractor, davis_root, out_dir / name, settings, subset, resolution, sequences,
                            score_on=score_on, workers=workers)
        metrics["checkpoint"] = str(checkpoint) if name == "trained" else None
        if name == "random_init":
            metrics["seed"] = seed
        write_json_atomic(out_dir / name / "metrics.json", metrics)
        results[name] = metrics
    write_json_atomic(out_dir / "metrics.json", results)
    figure = out_dir / "overlay.png"
    first_seq = open_davis(davis_root, subset, resolution, sequences)[0]
    write_overlay(first_seq, {name: out_dir / name for name in results}, figure)
    write_text_atomic(out_dir / "report.md", compare_report(results, figure.name, first_seq.name))
    return results


def write_overlay(seq, result_dirs: dict[str, Path], path: Path, n_columns: int = 5) -> None:
    """Ground truth and each extractor's propagated masks on evenly spaced frames of one sequence."""
    picks = np.linspace(0, len(seq.frames) - 1, n_columns).round().astype(int)
    frames = [read_frame(seq.frames[i]) for i in picks]
    rows = {"ground truth": [overlay(f, read_id_png(seq.masks[i])) for f, i in zip(frames, picks)]}
    for name, folder in result_dirs.items():    # results at the protocol's size are shown at the frame's
        rows[name] = [overlay(f, resize_ids(read_id_png(folder / seq.name / f"{seq.frames[i].stem}.png"),
                                            f.shape[:2], "nearest")) for f, i in zip(frames, picks)]
    overlay_figure(path, rows, captions=[f"frame {i}" for i in picks])


def compare_report(results: dict[str, dict], figure: str, sequence: str) -> str:
    """The markdown report: the comparison table, each extractor's global and per-sequence tables, settings."""
    first = next(iter(results.values()))
    parts = ["# Label propagation on DAVIS: trained vs random init vs pixels", "",
             comparison_table(results), "",
             f"![propagated masks, sequence {sequence}]({figure})", "",
             settings_line(first), ""]
    for name, metrics in results.items():
        parts += [f"## {name}", "", davis_global_table(metrics), "", davis_sequence_table(metrics), ""]
    return "\n".join(parts)
