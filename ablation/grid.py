"""The report's experiments as a list of training configurations (one run folder each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ablation import reference

GridName = Literal["encdec", "mask", "epochs", "all"]
TableName = Literal["encdec", "mask", "epochs"]


@dataclass(frozen=True)
class Schedule:
    """How long and how big each ablation run is. The defaults are the demo's CPU recipe (tools/demo.py):
    on the demo's 100 clips an epoch is 25 steps of 32 pairs, so 60 epochs are its 1,500 steps, 2 warmup
    epochs its 50 warmup steps and base lr 0.024 its lr 3e-3."""

    model: str = "vit_nano_patch16"
    input_size: int = 128
    batch_size: int = 32
    epochs: int = 60                      # encoder/decoder and mask-ratio runs
    epoch_snapshots: tuple[int, ...] = tuple(sorted(reference.EPOCHS))   # Table 1: snapshots of one run
    pairs_per_clip: int = 8               # an epoch = every clip read once, this many pairs from each
    blr: float = 0.024                    # base lr (× batch / 256); toy runs need more than MAE's 1.5e-4
    warmup_epochs: float = 2.0
    mask_ratio: float = 0.75              # of the encoder/decoder runs and Table 1's run (the report: 0.95)
    gap_range: tuple[int, int] = (2, 12)  # frame gap f1 -> f2, inclusive
    crop_scale: tuple[float, float] = (0.6, 1.0)
    seed: int = 0


@dataclass(frozen=True)
class AblationRun:
    """One training configuration, evaluated at one or more epoch snapshots."""

    name: str                             # run folder name, unique in the grid
    encoder: str
    decoder: str
    mask_ratio: float
    epochs: int                           # length of this run's schedule
    evaluate_at: tuple[int, ...]          # epochs whose checkpoints are evaluated
    seed: int

    def config_dict(self) -> dict:
        """The configuration as plain JSON, for results.json and the report's links."""
        return {"encoder": self.encoder, "decoder": self.decoder, "mask_ratio": self.mask_ratio,
                "epochs": self.epochs, "evaluate_at": list(self.evaluate_at), "seed": self.seed}


def _run(encoder: str, decoder: str, mask_ratio: float, epochs: int, evaluate_at: tuple[int, ...],
         seed: int) -> AblationRun:
    name = f"{encoder}-{decoder}-m{round(mask_ratio * 100):02d}-e{epochs}"
    return AblationRun(name, encoder, decoder, mask_ratio, epochs, evaluate_at, seed)


def build_grid(grid: GridName, schedule: Schedule) -> list[AblationRun]:
    """The runs a grid needs, without duplicates: a run shared by two tables is trained once.

    Each run gets its own seed derived from the schedule's seed and the run's name, so adding or
    removing a table does not change the other runs.
    """
    wanted: list[TableName] = ["encdec", "mask", "epochs"] if grid == "all" else [grid]
    runs: dict[str, AblationRun] = {}
    for encoder, decoder in reference.ENCODER_DECODER:
        if "encdec" in wanted:
            run = _run(encoder, decoder, schedule.mask_ratio, schedule.epochs, (schedule.epochs,), schedule.seed)
            runs.setdefault(run.name, run)
    for ratio in reference.MASK_RATIO:
        if "mask" in wanted:
            run = _run("siamese", "cross-self", ratio, schedule.epochs, (schedule.epochs,), schedule.seed)
            runs.setdefault(run.name, run)
    if "epochs" in wanted:
        longest = max(schedule.epoch_snapshots)
        run = _run("siamese", "cross-self", schedule.mask_ratio, longest, schedule.epoch_snapshots, schedule.seed)
        runs.setdefault(run.name, run)
    return [_with_seed(run, schedule.seed) for run in runs.values()]


def _with_seed(run: AblationRun, base_seed: int) -> AblationRun:
    digest = sum((i + 1) * ord(c) for i, c in enumerate(run.name))
    return AblationRun(run.name, run.encoder, run.decoder, run.mask_ratio, run.epochs, run.evaluate_at,
                       base_seed * 100_003 + digest % 100_003)
