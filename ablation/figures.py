"""Per-run figures for the ablation report: the loss curve and the last reconstruction."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def loss_curve(metrics_path: Path, out_png: Path, title: str) -> Path:
    """Plot training loss against step from a run's metrics.jsonl."""
    steps, losses = [], []
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        if isinstance(row.get("loss"), float):
            steps.append(row["step"])
            losses.append(row["loss"])
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(steps, losses, lw=1.2)
    ax.set(xlabel="step", ylabel="loss (masked f2 patches)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def latest_reconstruction(run_dir: Path) -> Path | None:
    """The newest reconstruction PNG the training run wrote (f1 | masked f2 | prediction | f2)."""
    pngs = sorted((run_dir / "recon").glob("step_*.png"))
    return pngs[-1] if pngs else None
