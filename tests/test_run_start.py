"""The demo and siammae-ablate re-enter their own run folders: resume a run that has a checkpoint, and
start afresh one that was killed before its first checkpoint (rather than stopping at 'no checkpoint')."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ablation.grid import Schedule, build_grid
from ablation.runner import AblationSetup, start_fields, train_config
from evaluation.settings import protocol_settings
from model.train import train
from model.train_config import TrainConfig
from siammae_common.console import UserError
from tools import demo


def _killed_before_first_checkpoint(run_dir: Path) -> None:
    """What a run killed during its first steps leaves: its config and a metrics row, no checkpoint."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')


def test_the_way_into_a_run_folder_follows_what_it_holds(tmp_path):
    fresh = tmp_path / "fresh"
    assert demo.start_options(fresh) == ["--overwrite"] and start_fields(fresh) == {"overwrite": True}
    killed = tmp_path / "killed"
    _killed_before_first_checkpoint(killed)
    assert demo.start_options(killed) == ["--overwrite"] and start_fields(killed) == {"overwrite": True}
    kept = tmp_path / "kept"
    (kept / "checkpoints").mkdir(parents=True)
    for name in ("epoch_0001.pt", "epoch_0002.pt"):
        (kept / "checkpoints" / name).write_bytes(b"")
    newest = kept / "checkpoints" / "epoch_0002.pt"
    assert demo.start_options(kept) == ["--resume-from", str(newest)]
    assert start_fields(kept) == {"resume_from": newest}
    (kept / "checkpoints" / "latest.pt").write_bytes(b"")
    assert demo.start_options(kept) == ["--resume"] and start_fields(kept) == {"resume": True}


def _tiny_setup(shards: Path, davis_root: Path, out: Path) -> AblationSetup:
    schedule = Schedule(epochs=1, epoch_snapshots=(1,), batch_size=4, pairs_per_clip=2, input_size=32)
    return AblationSetup(shards=shards, davis_root=davis_root, out=out, schedule=schedule,
                         settings=protocol_settings(), device="cpu")


def test_ablation_run_killed_before_its_first_checkpoint_trains_afresh(synthetic_root, synthetic_shards, tmp_path):
    setup = _tiny_setup(synthetic_shards, synthetic_root / "DAVIS", tmp_path / "grid")
    (run,) = build_grid("epochs", setup.schedule)
    _killed_before_first_checkpoint(setup.out / run.name)
    options = train_config(setup, run)
    with pytest.raises(UserError, match="no checkpoints/latest.pt"):     # what always resuming did
        train(TrainConfig(**{**options.__dict__, "overwrite": False, "resume": True}))
    assert train(options) > 0
    assert (setup.out / run.name / "checkpoints" / "latest.pt").is_file()
    assert train_config(setup, run).resume                                 # the next invocation resumes


def test_demo_training_command_restarts_a_run_killed_before_its_first_checkpoint(synthetic_shards, tmp_path):
    run_dir = tmp_path / "demo-run"
    _killed_before_first_checkpoint(run_dir)
    argv = [sys.executable, "-m", "model.train_cli", "--shards", str(synthetic_shards), "--out", str(run_dir),
            "--model", "vit_micro_patch16", "--input-size", "32", "--batch-size", "4", "--max-steps", "2",
            "--device", "cpu", "--loader", "wds", "--num-workers", "0", "--warmup-steps", "1"]
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 2 and "no checkpoints/latest.pt" in resumed.stderr
    started = subprocess.run([*argv, *demo.start_options(run_dir)], capture_output=True, text=True, timeout=300,
                             check=False)
    assert started.returncode == 0, started.stderr[-2000:]
    assert demo.start_options(run_dir) == ["--resume"]
