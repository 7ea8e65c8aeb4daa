"""The demo's evaluation (tools/demo_eval.py, tools/demo_report.py): which propagations it runs, what its
closing line says, and a resumable end-to-end run on tiny data."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from model.config import model_config
from tools.demo_eval import job_key, plan_jobs
from tools.demo_report import closing_line, median_sequence


def test_view2_grid_is_the_training_grid_made_half_as_wide_again_and_view3_runs_on_the_first_sequences():
    config = model_config("vit_nano_patch16", input_size=128)
    jobs = plan_jobs(config, [f"s{i}" for i in range(5)], view3_sequences=2)
    view2 = [j for j in jobs if j.view == "view2"]
    assert {j.features for j in view2} == {"trained", "random-init-0", "random-init-1", "random-init-2", "pixels"}
    assert all(j.settings.fixed_size == (128, 192) and len(j.sequences) == 5 for j in view2)   # 8x12 vs 8x8
    view3 = [j for j in jobs if j.view.startswith("view3")]
    assert all(j.sequences == ("s0", "s1") for j in view3)
    assert {(j.view, j.settings.fixed_size) for j in view3} == {("view3-native", None), ("view3-protocol", (480, 880))}
    assert "pixels" not in {j.features for j in view3 if j.view == "view3-protocol"}
    assert not [j for j in plan_jobs(config, ["s0"], view3_sequences=0) if j.view != "view2"]


def _views(trained: float, pixels: float, copy_f1: float) -> dict:
    metrics = {"J&F-Mean": 0.0, "J-Mean": 0.0, "F-Mean": 0.0}
    return {"view1": {"trained": 0.4, "copy_f1": copy_f1, "mean": 1.0},
            "propagation": {"view2/trained": {**metrics, "J&F-Mean": trained},
                            "view2/random-init-0": {**metrics, "J&F-Mean": 0.30},
                            "view2/pixels": {**metrics, "J&F-Mean": pixels}}}


def test_closing_line_says_what_the_trained_encoder_beat_and_what_it_did_not():
    line = closing_line(_views(trained=0.40, pixels=0.45, copy_f1=0.5))
    beat, lost = line.split("**It did not beat**")
    assert "copying f1" in beat and "random init, seed 0 at toy scale (+0.100 J&F)" in beat
    assert "pixels at toy scale (-0.050 J&F)" in lost
    line = closing_line(_views(trained=0.40, pixels=0.35, copy_f1=0.3))
    beat, lost = line.split("**It did not beat**")
    assert "pixels" in beat and "copying f1" in lost
    line = closing_line(_views(trained=0.40, pixels=0.35, copy_f1=0.5))
    assert "did not beat" not in line and line.endswith("It lost to nothing it was compared with.")
    line = closing_line(_views(trained=0.20, pixels=0.35, copy_f1=0.3))
    assert line.startswith("**The trained encoder beat nothing.**") and "copying f1" in line


@pytest.mark.slow
def test_demo_evaluation_writes_the_report_and_a_rerun_keeps_every_propagation(synthetic_root, synthetic_shards,
                                                                               tmp_path):
    run_dir = tmp_path / "run"
    train = [sys.executable, "-m", "model.train_cli", "--shards", str(synthetic_shards), "--out", str(run_dir),
             "--model", "vit_nano_patch16", "--input-size", "32", "--batch-size", "4", "--max-steps", "3",
             "--device", "cpu", "--loader", "wds", "--num-workers", "0", "--warmup-steps", "1", "--log-every", "1"]
    done = subprocess.run(train, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    argv = [sys.executable, "tools/demo_eval.py", "--checkpoint", str(run_dir / "checkpoints" / "latest.pt"),
            "--davis-root", str(synthetic_root / "DAVIS"), "--out", str(tmp_path / "eval"), "--view3-sequences", "0"]
    repo = Path(__file__).resolve().parents[1]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd=repo)
    assert first.returncode == 0, first.stderr[-2000:]
    views = json.loads((tmp_path / "eval" / "views.json").read_text())
    assert set(views["propagation"]) == {f"view2/{n}" for n in
                                         ("trained", "random-init-0", "random-init-1", "random-init-2", "pixels")}
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "**The trained encoder beat" in report and "predict each patch's mean" in report
    for png in ("loss.png", "reconstruction.png", "overlay-view2.png"):
        assert (tmp_path / "eval" / png).stat().st_size > 0
    second = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd=repo)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stderr.count("(kept)") == 5


def test_the_overlay_shows_the_median_sequence_not_the_best():
    per_object = {"a_1": {"J": 0.9, "F": 0.9}, "b_1": {"J": 0.1, "F": 0.1}, "c_1": {"J": 0.5, "F": 0.4},
                  "c_2": {"J": 0.6, "F": 0.5}, "d_1": {"J": 0.3, "F": 0.3}}
    assert median_sequence(per_object) == "d"          # means: b 0.1, d 0.3, c 0.5, a 0.9 -> lower middle
    assert median_sequence({k: v for k, v in per_object.items() if k != "b_1"}) == "c"


def test_a_kept_trained_propagation_is_found_whichever_way_the_checkpoint_is_named(tmp_path, monkeypatch):
    checkpoint = tmp_path / "run" / "checkpoints" / "latest.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"x")
    config = model_config("vit_nano_patch16")
    job = plan_jobs(config, ["s0"], view3_sequences=0)[0]
    job = dataclasses.replace(job, features="trained")
    monkeypatch.chdir(tmp_path)
    assert job_key(job, config, checkpoint) == job_key(job, config, Path("run/checkpoints/latest.pt"))
