"""What a training run writes besides checkpoints (rank 0 only): config.json, metrics.jsonl,
TensorBoard events, reconstruction PNGs, the start summary and the progress (a bar on a terminal, one
plain line per logged step in a log file); and what every row measures (StepWindow).

The input-bound share: `data_wait_s` is the time a step spent waiting for the loader to hand over its
micro-batches (`next()` on the loader, measured on the host), `data_wait_frac` that time as a fraction
of the step's wall time. Where the host blocks decides what this means: on a CPU every operation is
synchronous, so the wait is exactly the time training stood still for data. On CUDA, kernel launches
return at once and the host only blocks when it needs a result (the loss at a logged step) or when the
launch queue is full: a GPU-bound loop therefore hands over its time to the GPU inside the step, and
shows a wait near 0; a loader-bound loop waits in `next()` while the GPU drains, and the wait shows.
The loader itself never blocks on the GPU (no per-batch device tensors, DALI's output handed over by
stream-ordered DLPack), so its wait is the loader's alone. Each logged row covers the steps since the
previous one, averaged over ranks; checkpoint saving and reconstruction images are left out of both.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import distributed as dist
from model.distributed import DistInfo
from model.recon_images import save_png
from model.train_config import TrainConfig
from model.train_state import TrainState
from siammae_common.atomic import write_text_atomic
from siammae_common.console import progress


@dataclass(frozen=True)
class WindowStats:
    """One logged row's figures, averaged over ranks."""

    loss: float
    pairs_per_s: float              # all ranks together
    step_s: float                   # wall time per optimizer step
    data_wait_s: float              # per step, time spent waiting for the loader
    data_wait_frac: float           # data_wait_s / step_s


class StepWindow:
    """The loss, throughput and input-bound share since the last logged step (the loss sum stays on the
    device), and the run's totals for the closing line."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss_sum = torch.zeros((), device=device)
        self.steps, self.wait, self.start, self.excluded = 0, 0.0, time.perf_counter(), 0.0
        self.total_wait, self.total_time = 0.0, 0.0

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss

    def next_batch(self, batches: Iterator[Any]) -> Any:
        """The loader's next micro-batch, the time the host waited for it counted as data wait."""
        t0 = time.perf_counter()
        batch = next(batches)
        self.wait += time.perf_counter() - t0
        return batch

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Work that is not a training step (checkpoints, images): left out of the step time."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - t0

    def flush(self, pairs_per_step: int) -> WindowStats:
        """The figures since the last flush, averaged over ranks (one collective); starts a new window."""
        steps = max(self.steps, 1)
        elapsed = max(time.perf_counter() - self.start - self.excluded, 1e-9)
        local = torch.stack([(self.loss_sum / steps).double(),
                             torch.tensor(self.wait, dtype=torch.float64, device=self.device),
                             torch.tensor(elapsed, dtype=torch.float64, device=self.device)])
        loss, wait, elapsed = dist.all_reduce_mean(local).tolist()      # waits for the steps' results
        self.total_wait, self.total_time = self.total_wait + wait, self.total_time + elapsed
        stats = WindowStats(loss, steps * pairs_per_step / elapsed, elapsed / steps, wait / steps,
                            min(wait / elapsed, 1.0))
        self.loss_sum.zero_()
        self.steps, self.wait, self.start, self.excluded = 0, 0.0, time.perf_counter(), 0.0
        return stats

    def input_bound_line(self) -> str:
        """The run's closing line: how much of the logged training time was spent waiting for data."""
        frac = self.total_wait / self.total_time if self.total_time > 0 else 0.0
        return (f"input-bound {frac:.0%} of the time: the steps waited {self.total_wait:.1f} s for data "
                f"in {self.total_time:.1f} s of training (data_wait_frac in metrics.jsonl, per logged row)")


def run_config(cfg: TrainConfig, state: TrainState, steps_per_epoch: int, dist_info: DistInfo,
               loader: dict[str, Any], made_with: dict[str, Any] | None) -> dict[str, Any]:
    """config.json: a new run's settings, shard fingerprint and loader. A resumed run keeps the file its
    start wrote (or, where that is lost, the settings `made_with` of the checkpoint it resumed from), so
    it never claims options that did not make the weights; its "history" lists every resume, with what
    changed."""
    path = Path(cfg.out) / "config.json"
    kept = _read_config(path) if made_with is not None else None
    if kept is None:
        kept = {"train": made_with or cfg.to_dict(), "data": state.data, "schedule": vars(state.schedule),
                "steps_per_epoch": steps_per_epoch, "world_size": dist_info.world_size,
                "micro_batch_per_rank": cfg.micro_batch(dist_info.world_size), "torch": torch.__version__,
                "loader": loader}
    return {"data": state.data, **kept, "history": state.history}     # a run from before fingerprints: adopted


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("train"), dict) else None


class RunLog:
    def __init__(self, cfg: TrainConfig, state: TrainState, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to import

        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        schedule, start_step = state.schedule, state.step
        write_text_atomic(self.out / "config.json", json.dumps(config, indent=1) + "\n")
        metrics = self.out / "metrics.jsonl"
        _drop_rows_after(metrics, start_step)           # rows a resumed-from-earlier run will write again
        self.metrics = metrics.open("a")
        self.tb = SummaryWriter(str(self.out / "tb"), purge_step=start_step or None)
        stop = schedule.total_steps if cfg.stop_at_step is None else min(cfg.stop_at_step, schedule.total_steps)
        # a terminal gets a bar; a log file one plain line per logged step (seconds=0: every update)
        self.bar = progress(total=stop, desc="train", unit="step", initial=start_step, seconds=0, rate=False)

    def scalars(self, step: int, epoch: float, lr: float, stats: WindowStats) -> None:
        """One logged step: metrics.jsonl, TensorBoard and the progress bar."""
        row = {"step": step, "epoch": round(epoch, 4), "loss": stats.loss, "lr": lr,
               "pairs_per_s": round(stats.pairs_per_s, 2), "step_time_s": round(stats.step_s, 5),
               "data_wait_s": round(stats.data_wait_s, 5), "data_wait_frac": round(stats.data_wait_frac, 4)}
        finite = math.isfinite(stats.loss)
        self.metrics.write(json.dumps(row if finite else {**row, "loss": str(stats.loss)}) + "\n")
        self.metrics.flush()
        for name in ("loss", "lr", "pairs_per_s", "step_time_s", "data_wait_s", "data_wait_frac"):
            self.tb.add_scalar(f"train/{name}", row[name], step)
        self.bar.set_postfix_str(f"epoch {epoch:.2f} | loss {stats.loss:.4f} | lr {lr:.2e} | "
                                 f"{stats.pairs_per_s:,.0f} pairs/s | input-bound {stats.data_wait_frac:.0%}",
                                 refresh=False)
        self.bar.update(step - self.bar.n)

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
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))
