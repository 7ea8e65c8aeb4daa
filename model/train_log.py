"""What a training run writes besides checkpoints (rank 0 only): config.json, metrics.jsonl,
TensorBoard events, reconstruction PNGs and the progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from model.config import ModelConfig
from model.distributed import DistInfo
from model.recon_images import save_png
from model.schedule import LRSchedule
from model.train_config import TrainConfig
from siammae_common.console import progress


class RunLog:
    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, schedule: LRSchedule, steps_per_epoch: int,
                 where: DistInfo, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to import

        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        config = {"train": cfg.to_dict(), "model": model_cfg.to_dict(), "schedule": vars(schedule),
                  "steps_per_epoch": steps_per_epoch, "world_size": where.world_size,
                  "micro_batch_per_rank": cfg.micro_batch(where.world_size), "torch": torch.__version__}
        (self.out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        metrics = self.out / "metrics.jsonl"
        _drop_rows_after(metrics, start_step)           # rows a resumed-from-earlier run will write again
        self.metrics = metrics.open("a")
        self.tb = SummaryWriter(str(self.out / "tb"), purge_step=start_step or None)
        stop = schedule.total_steps if cfg.stop_at_step is None else min(cfg.stop_at_step, schedule.total_steps)
        self.bar = progress(total=stop, desc="train", unit="step")
        self.bar.update(start_step)

    def scalars(self, step: int, epoch: float, loss: float, lr: float, pairs_per_s: float,
                step_time_s: float) -> None:
        """One logged step: metrics.jsonl, TensorBoard and the progress bar."""
        row = {"step": step, "epoch": round(epoch, 4), "loss": loss, "lr": lr,
               "pairs_per_s": round(pairs_per_s, 2), "step_time_s": round(step_time_s, 5)}
        self.metrics.write(json.dumps(row if math.isfinite(loss) else {**row, "loss": str(loss)}) + "\n")
        self.metrics.flush()
        for name in ("loss", "lr", "pairs_per_s", "step_time_s"):
            self.tb.add_scalar(f"train/{name}", row[name], step)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", pairs_s=f"{pairs_per_s:.0f}", refresh=False)

    def image(self, step: int, grid: np.ndarray) -> None:
        """A reconstruction figure (f1 | masked f2 | prediction | f2) as PNG and in TensorBoard."""
        save_png(grid, self.out / "recon" / f"step_{step:08d}.png")
        self.tb.add_image("recon", grid, step, dataformats="HWC")

    def close(self) -> None:
        self.bar.close()
        self.tb.close()
        self.metrics.close()


def _drop_rows_after(path: Path, step: int) -> None:
    """Keep the rows of metrics.jsonl up to `step` (rewritten atomically; a cut last line is dropped too)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    tmp.replace(path)
