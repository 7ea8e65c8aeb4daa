"""Train and evaluate each ablation run, resumably: results.json is rewritten after every step."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ablation.figures import latest_reconstruction, loss_curve
from ablation.grid import AblationRun, Schedule
from evaluation.compare import write_overlay
from evaluation.davis import run_davis
from evaluation.davis_io import open_davis
from evaluation.features import FeatureExtractor, PixelFeatures, checkpoint_features, random_init_features
from evaluation.hidden_patch import PairSpec, held_out_pairs, hidden_patch_errors
from evaluation.propagation import PropagationSettings
from evaluation.report import write_json_atomic
from model.checkpoint import load_model
from model.config import model_config
from model.run_folder import start_fields
from model.train import train
from model.train_config import TrainConfig
from siammae_common.console import info

SCORE_KEYS = ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "F-Recall", "J-Decay", "F-Decay")
UNTRAINED_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class AblationSetup:
    """Where the data is and how every run is trained and evaluated."""

    shards: Path
    davis_root: Path
    out: Path
    schedule: Schedule
    settings: PropagationSettings
    device: str = "auto"
    loader: str = "dali"


def train_config(setup: AblationSetup, run: AblationRun) -> TrainConfig:
    """The siammae-train options of one run; every epoch it is evaluated at keeps a checkpoint."""
    schedule = setup.schedule
    return TrainConfig.from_options(
        shards=setup.shards, out=setup.out / run.name, model=schedule.model, encoder=run.encoder,
        decoder=run.decoder, mask_ratio=run.mask_ratio, input_size=schedule.input_size,
        batch_size=schedule.batch_size, epochs=run.epochs, warmup_epochs=schedule.warmup_epochs,
        blr=schedule.blr, pairs_per_clip=schedule.pairs_per_clip, gap_min=schedule.gap_range[0],
        gap_max=schedule.gap_range[1], crop_scale=schedule.crop_scale, seed=run.seed, device=setup.device,
        loader=setup.loader, save_every=1, log_every=1, recon_every=10**9, **start_fields(setup.out / run.name))


def checkpoint_at(setup: AblationSetup, run: AblationRun, epoch: int) -> Path:
    """The checkpoint kept at the end of `epoch` of a run."""
    return setup.out / run.name / "checkpoints" / f"epoch_{epoch:04d}.pt"


def load_results(path: Path, header: dict) -> dict:
    """results.json as left by an earlier (possibly interrupted) invocation, or a new one."""
    if path.exists():
        results = json.loads(path.read_text())
        results.update({k: v for k, v in header.items() if k != "runs"})
        return results
    return {**header, "runs": {}}


def _is_main() -> bool:
    # torchrun's RANK: siammae-train sets up and tears down the process group inside each run, so
    # between runs torch.distributed cannot say which process is the first.
    return int(os.environ.get("RANK", "0")) == 0


def run_grid(setup: AblationSetup, runs: list[AblationRun], results: dict, results_path: Path) -> dict:
    """Train what is not trained yet, evaluate what is not evaluated yet, and record both."""
    if _is_main() and not results.get("baselines"):
        info("evaluating the baselines: random-init encoders (seeds 0, 1, 2) and raw pixels")
        results["baselines"] = evaluate_baselines(setup)
        _save(results, results_path)
    for number, run in enumerate(runs, start=1):
        entry = results["runs"].setdefault(run.name, {"config": run.config_dict(), "scores": {}})
        options = train_config(setup, run)
        entry["config"] = run.config_dict()
        entry["train"] = options.to_dict()
        if not entry.get("trained"):
            info(f"[{number}/{len(runs)}] training {run.name}")
            train(options)
            entry["trained"] = True
            _save(results, results_path)
        for epoch in run.evaluate_at:
            if str(epoch) in entry["scores"] or not _is_main():
                continue
            info(f"[{number}/{len(runs)}] evaluating {run.name} at epoch {epoch}")
            entry["scores"][str(epoch)] = evaluate(setup, run, epoch)
            _save(results, results_path)
        if _is_main():
            entry["figures"] = figures(setup, run)
            _save(results, results_path)
    return results


def score_on_davis(setup: AblationSetup, extractor: FeatureExtractor, out: Path) -> dict:
    """Propagate and score with `extractor`, keep OUT/metrics.json; the summary numbers and their file."""
    metrics = run_davis(extractor, setup.davis_root, out, setup.settings)
    write_json_atomic(out / "metrics.json", metrics)
    return {key: metrics[key] for key in SCORE_KEYS} | {"metrics": str(out.relative_to(setup.out) / "metrics.json")}


def evaluate(setup: AblationSetup, run: AblationRun, epoch: int) -> dict:
    """Label propagation on DAVIS with the checkpoint of `epoch` (the davis-score numbers), and view 1: the
    error on f2's hidden patches of held-out pairs, beside copying f1 and predicting the mean."""
    checkpoint = checkpoint_at(setup, run, epoch)
    with _evaluation_threads(setup.settings.device):
        scores = score_on_davis(setup, checkpoint_features(checkpoint, setup.settings.device),
                                setup.out / run.name / f"eval-epoch{epoch:04d}")
        model, config = load_model(checkpoint)
        spec = PairSpec(crop=0, size=config.input_size, gap_range=setup.schedule.gap_range)
        scores["hidden_patch"] = hidden_patch_errors(model, *held_out_pairs(setup.davis_root, spec)).to_dict()
    return scores


def evaluate_baselines(setup: AblationSetup) -> dict[str, dict]:
    """Random-init encoders of the grid's architecture (seeds 0, 1, 2) and raw-pixel features, with the same
    settings: every trained row is read against them."""
    schedule = setup.schedule
    model_cfg = model_config(schedule.model, input_size=schedule.input_size)
    extractors = {f"random_init_{seed}": lambda seed=seed: random_init_features(
        config=model_cfg, seed=seed, device=setup.settings.device) for seed in UNTRAINED_SEEDS}
    extractors["pixels"] = lambda: PixelFeatures(model_cfg.patch_size, "flatten")
    with _evaluation_threads(setup.settings.device):
        return {name: score_on_davis(setup, make(), setup.out / "baselines" / name) for name, make in extractors.items()}


@contextmanager
def _evaluation_threads(device: str) -> Iterator[None]:
    """One torch thread while propagating on a CPU: its many small operations run several times faster
    than on two threads of a busy 2-core machine."""
    before = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def figures(setup: AblationSetup, run: AblationRun) -> dict[str, str]:
    """Loss curve, last reconstruction and a propagation overlay, as paths relative to the grid folder."""
    run_dir = setup.out / run.name
    made = {"loss curve": loss_curve(run_dir / "metrics.jsonl", run_dir / "loss.png", run.name)}
    recon = latest_reconstruction(run_dir)
    if recon is not None:
        made["reconstruction"] = recon
    last = max(run.evaluate_at)
    seq = open_davis(setup.davis_root)[0]
    overlay = run_dir / "overlay.png"
    write_overlay(seq, {run.name: run_dir / f"eval-epoch{last:04d}"}, overlay)
    made["propagation"] = overlay
    return {kind: str(Path(path).relative_to(setup.out)) for kind, path in made.items()}


def _save(results: dict, path: Path) -> None:
    if _is_main():
        write_json_atomic(path, results)
