"""benchmarks/gpu_check.sh runs its whole GPU procedure in CPU mode here, and its summary judges the
H100 targets from the figures it is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_summary import summarise_check, summary_markdown

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_in_cpu_mode(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=170, env=env, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert {"env.json", "log.txt", "summary.json", "summary.md", "train_step.json",
            "loader-t1-hw0.65.json", "loader-t2-hw0.65.json"} <= {p.name for p in out.iterdir()}
    env_json = json.loads((out / "env.json").read_text())
    assert env_json["command"].startswith("benchmarks/gpu_check.sh --device cpu")
    assert env_json["versions"]["torch"] and env_json["date"] and env_json["cpu_cores"] >= 1
    assert env_json["versions"]["python_executable"] == sys.executable
    summary = json.loads((out / "summary.json").read_text())
    assert [e["threads"] for e in summary["loader_sweep"]] == [1, 2]
    assert all(e["pairs_per_s"] > 0 and e["rounds"] == 3 for e in summary["loader_sweep"])
    steps = summary["train_step"]
    assert steps["step_s"] > 0 and steps["with_loader"]["threads"] == summary["best_loader"]["threads"]
    assert "loader_overhead" in steps and summary["failed_steps"] == []
    assert 0 <= steps["with_loader"]["data_wait_frac"] <= 1          # siammae-train's loader, its wait for data
    log = (out / "log.txt").read_text()
    for command in ("tools/make_synthetic.py", "tools/make_shards.py", "-m benchmarks.bench",
                    "-m benchmarks.train_step_bench"):
        assert command in log
    assert "Training steps" in done.stdout


def fake_results(tmp_path: Path, loader_pps: float, step_s: float, overhead: float, mfu: float
                 ) -> tuple[list[Path], Path]:
    sweep = []
    for threads, pps in ((4, loader_pps / 2), (8, loader_pps)):
        path = tmp_path / f"loader-t{threads}.json"
        path.write_text(json.dumps({
            "config": {"workers": threads, "batch_size": 256, "rounds": 3, "decoder": {"hw_decoder_load": 0.65},
                       "sampling": {"crop_size": 224}},
            "loaders": {"dali_gpu": {"pairs_per_s": pps, "pairs_per_s_min": pps, "pairs_per_s_max": pps,
                                     "efficiency": 0.9},
                        "ceiling_gpu": {"pairs_per_s": pps / 0.9}}}))
        sweep.append(path)
    step = tmp_path / "train_step.json"
    step.write_text(json.dumps({
        "model": {"name": "vit_small_patch16", "input_size": 224, "decoder_embed_dim": 512, "decoder_depth": 8},
        "batch_size": 256, "amp_bf16": True, "compile": False, "device": "NVIDIA H100",
        "tensors_on_device": {"step_s": step_s, "pairs_per_s": 256 / step_s}, "mfu": mfu,
        "with_loader": {"loader": "dali", "threads": 8, "hw_decoder_load": 0.65, "step_s": step_s * (1 + overhead),
                        "pairs_per_s": 256 / step_s / (1 + overhead), "overhead": overhead}}))
    return sweep, step


GPU_ENV = {"date": "2026-01-01T00:00:00+00:00", "command": "benchmarks/gpu_check.sh", "cpu_cores": 16,
           "cpu": "x86", "gpus": [{"name": "NVIDIA H100 80GB HBM3", "driver": "580.1", "memory": "80 GiB",
                                   "compute_cap": "9.0"}],
           "versions": {"torch": "2.11.0", "torch_cuda": "13.0", "dali": "2.4.0", "dali_cuda": 13000,
                        "python": "3.12"}}


def test_the_summary_takes_the_fastest_setting_and_judges_each_target(tmp_path: Path) -> None:
    sweep, step = fake_results(tmp_path, loader_pps=24_000, step_s=0.05, overhead=0.01, mfu=0.40)
    s = summarise_check(GPU_ENV, ("dali_gpu", "ceiling_gpu"), sweep, step, [], "synthetic")
    assert s["best_loader"]["threads"] == 8
    assert s["figures"]["loader_vs_training_demand"] == pytest.approx(24_000 / 5_120)
    met = {t["target"]: t["met"] for t in s["targets"]}
    assert list(met.values()) == [True, True, True, False]            # MFU 40% < 45%
    text = summary_markdown(s)
    assert "NVIDIA H100 80GB HBM3, driver 580.1" in text and "| 8 | 0.65 | 24,000 |" in text


def test_a_cpu_summary_has_no_h100_targets_and_reports_what_failed(tmp_path: Path) -> None:
    env = {**GPU_ENV, "gpus": []}
    s = summarise_check(env, ("dali_cpu", "ceiling"), [], None, ["training steps"], "synthetic")
    assert "targets" not in s and s["best_loader"] is None and s["train_step"] is None
    assert "Failed steps (see log.txt): training steps" in summary_markdown(s)
