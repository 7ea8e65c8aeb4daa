"""siammae-train on the synthetic shards on CPU: the run folder, exact resume, bad options, divergence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from model.checkpoint import load_checkpoint, load_model
from model.siammae import SiamMAE
from model.train_cli import main

TINY = ["--model", "vit_micro_patch16", "--input-size", "32", "--batch-size", "4", "--device", "cpu",
        "--warmup-steps", "2", "--blr", "0.01", "--log-every", "1", "--recon-every", "3", "--torch-threads", "1"]


def train(shards: Path, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh process, as a user would."""
    argv = [sys.executable, "-m", "model.train_cli", "--shards", str(shards), "--out", str(out), *TINY, *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight_run(synthetic_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "straight"
    train(synthetic_shards, out, "--max-steps", "6")
    return out


def test_the_run_folder_holds_config_metrics_checkpoint_events_and_reconstructions(straight_run: Path) -> None:
    config = json.loads((straight_run / "config.json").read_text())
    assert config["train"]["model"]["name"] == "vit_micro_patch16" and config["train"]["batch_size"] == 4
    rows = metrics(straight_run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"step", "epoch", "loss", "lr", "pairs_per_s"} <= set(rows[0])
    assert all(r["pairs_per_s"] > 0 for r in rows)
    assert sorted(p.name for p in (straight_run / "recon").glob("*.png")) == ["step_00000003.png",
                                                                            "step_00000006.png"]
    assert list((straight_run / "tb").glob("events.out.tfevents.*"))
    model, cfg = load_model(straight_run / "checkpoints" / "latest.pt")
    assert isinstance(model, SiamMAE) and cfg.input_size == 32 and not model.training
    assert model.encode(torch.zeros(1, 3, 64, 96)).shape == (1, 4, 6, 96)
    assert not list((straight_run / "checkpoints").glob(".*tmp"))           # no half-written files


def test_a_run_stopped_midway_and_resumed_matches_the_uninterrupted_one(
        straight_run: Path, synthetic_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    train(synthetic_shards, out, "--max-steps", "6", "--stop-at-step", "4")     # 3 batches/epoch: mid-epoch
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == 4
    done = train(synthetic_shards, out, "--max-steps", "6", "--resume")
    assert "resumed from" in done.stderr

    straight, resumed = metrics(straight_run), metrics(out)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), (a, b)
        assert a["lr"] == pytest.approx(b["lr"])
    wa = load_checkpoint(straight_run / "checkpoints" / "latest.pt")["model"]
    wb = load_checkpoint(out / "checkpoints" / "latest.pt")["model"]
    for name, tensor in wa.items():
        torch.testing.assert_close(wb[name], tensor, rtol=1e-5, atol=1e-6)


def test_the_webdataset_loader_trains_too(synthetic_shards: Path, tmp_path: Path) -> None:
    train(synthetic_shards, tmp_path / "wds", "--max-steps", "2", "--loader", "wds", "--num-workers", "1")
    assert [r["step"] for r in metrics(tmp_path / "wds")] == [1, 2]


def test_a_non_finite_loss_stops_the_run_naming_the_step(synthetic_shards: Path, tmp_path: Path) -> None:
    done = train(synthetic_shards, tmp_path / "nan", "--max-steps", "6", "--lr", "1e30", check=False)
    assert done.returncode != 0
    assert "non-finite at step" in done.stderr
    assert not (tmp_path / "nan" / "checkpoints" / "latest.pt").exists()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("problem", ["no-dir", "no-manifest", "batch", "model", "input-size", "mask-ratio",
                                     "crop-scale-range", "crop-scale-format"])
def test_bad_options_exit_2_with_one_clear_line_before_any_work(
        problem: str, synthetic_shards: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    shards, extra, expected = str(synthetic_shards), [], ""
    if problem == "no-dir":
        shards, expected = str(tmp_path / "missing"), "no such directory"
    elif problem == "no-manifest":
        shards, expected = str(empty), "no manifest.json"
    elif problem == "batch":
        extra, expected = ["--batch-size", "6", "--accum-steps", "4"], "not divisible"
    elif problem == "model":
        extra, expected = ["--model", "vit_huge_patch3"], "--model"
    elif problem == "input-size":
        extra, expected = ["--model", "vit_micro_patch16", "--input-size", "40"], "multiple of patch"
    elif problem == "mask-ratio":
        extra, expected = ["--model", "vit_micro_patch16", "--mask-ratio", "1.0"], "--mask-ratio"
    elif problem == "crop-scale-range":
        extra, expected = ["--crop-scale", "0.6,0.2"], "--crop-scale"
    elif problem == "crop-scale-format":
        extra, expected = ["--crop-scale", "0.2"], "LO,HI"
    code, output = cli("--shards", shards, "--out", str(out), "--device", "cpu", *extra)
    assert code == 2, output
    assert expected in output
    assert "Traceback" not in output
    assert not out.exists()


def test_crop_scale_reaches_the_loader(
        synthetic_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.loader

    seen = []

    def fake_loader(cfg, data=None):          # stop the run as soon as the loader is asked for
        seen.append(cfg)
        raise RuntimeError("loader requested")

    monkeypatch.setattr(pipeline.loader, "build_pair_loader", fake_loader)
    result = CliRunner().invoke(main, ["--shards", str(synthetic_shards), "--out", str(tmp_path / "cs"), *TINY,
                                       "--max-steps", "1", "--crop-scale", "0.15,0.5"])
    assert isinstance(result.exception, RuntimeError), result.output
    assert seen and seen[0].sampling.crop_scale == (0.15, 0.5)
    assert seen[0].sampling.crop_size == 32


def test_an_existing_run_needs_resume(straight_run: Path, synthetic_shards: Path) -> None:
    code, output = cli("--shards", str(synthetic_shards), "--out", str(straight_run), *TINY)
    assert code == 2 and "--resume" in output
