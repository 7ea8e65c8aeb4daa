"""Outputs of an evaluation: metrics JSON written atomically, markdown tables, an overlay figure (Pillow)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluation.dataset_io import PALETTE
from siammae_common.atomic import atomic_write, write_text_atomic


def write_json_atomic(path: Path, data: object) -> None:
    """Write `data` as JSON, atomically: readers never see half a file (numpy numbers as Python's)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _fmt(value: float, scale: float = 1.0) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * scale:.3f}"


def davis_global_table(metrics: Mapping[str, float]) -> str:
    """One-row markdown table of the seven official global numbers."""
    from evaluation.davis_metrics import SUMMARY_KEYS

    head = "| " + " | ".join(SUMMARY_KEYS) + " |"
    rule = "| " + " | ".join("---:" for _ in SUMMARY_KEYS) + " |"
    row = "| " + " | ".join(_fmt(metrics[k]) for k in SUMMARY_KEYS) + " |"
    return f"{head}\n{rule}\n{row}"


def davis_sequence_table(metrics: Mapping) -> str:
    """Markdown table per sequence: per-object J-Mean and F-Mean rows grouped by sequence, plus their mean."""
    by_seq: dict[str, list[tuple[str, float, float]]] = {}
    for name, jf in metrics["per_object"].items():
        seq, _, obj = name.rpartition("_")
        by_seq.setdefault(seq, []).append((obj, jf["J"], jf["F"]))
    lines = ["| sequence | objects | J-Mean | F-Mean | J&F |", "| --- | ---: | ---: | ---: | ---: |"]
    for seq, objs in by_seq.items():
        j = float(np.mean([o[1] for o in objs]))
        f = float(np.mean([o[2] for o in objs]))
        lines.append(f"| {seq} | {len(objs)} | {_fmt(j)} | {_fmt(f)} | {_fmt((j + f) / 2)} |")
    return "\n".join(lines)


def settings_line(metrics: Mapping) -> str:
    """One markdown line naming the protocol, where the scores were computed, and every setting."""
    settings = metrics.get("settings", {})
    where = f", scored at {metrics['score_on']} size" if "score_on" in metrics else ""
    return (f"Protocol: {metrics.get('protocol', settings.get('protocol', '?'))}{where}. Settings: "
            + ", ".join(f"{k}={v}" for k, v in settings.items()))


def comparison_table(results: Mapping[str, Mapping[str, float]],
                     keys: Sequence[str] = ("J&F-Mean", "J-Mean", "F-Mean")) -> str:
    """Markdown table, one row per feature extractor (trained / random_init / pixels)."""
    lines = ["| features | " + " | ".join(keys) + " |", "| --- | " + " | ".join("---:" for _ in keys) + " |"]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics[k]) for k in keys) + " |")
    return "\n".join(lines)


def overlay(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Frame [H, W, 3] uint8 with object ids [H, W] blended in their palette colours (background untouched)."""
    colours = np.array(PALETTE, dtype=np.float32).reshape(-1, 3)[ids]
    out = frame.astype(np.float32)
    fg = ids > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg]
    return out.clip(0, 255).astype(np.uint8)


def overlay_figure(path: Path, rows: Mapping[str, Sequence[np.ndarray]], captions: Sequence[str] = ()) -> None:
    """A grid PNG: one row per label (e.g. 'ground truth', 'trained'), images [H, W, 3] left to right."""
    rows = {k: list(v) for k, v in rows.items() if len(v)}
    if not rows:
        raise ValueError("overlay_figure needs at least one non-empty row")
    h, w = next(iter(rows.values()))[0].shape[:2]
    label_w, caption_h = 90, 14 if captions else 0
    n_cols = max(len(v) for v in rows.values())
    canvas = Image.new("RGB", (label_w + n_cols * (w + 2), caption_h + len(rows) * (h + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, caption in enumerate(captions):
        draw.text((label_w + c * (w + 2) + 2, 1), caption, fill="black")
    for r, (label, images) in enumerate(rows.items()):
        y = caption_h + r * (h + 2)
        draw.text((3, y + h // 2 - 5), label, fill="black")
        for c, image in enumerate(images):
            canvas.paste(Image.fromarray(image), (label_w + c * (w + 2), y))
    with atomic_write(path) as f:
        canvas.save(f, format="PNG")
