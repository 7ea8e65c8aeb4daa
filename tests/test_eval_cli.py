"""siammae-eval: bad input names the file and exits non-zero; davis, davis-score and compare run end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from evaluation.cli import main
from evaluation.dataset_io import read_id_png, write_id_png
from evaluation.davis_io import open_davis

TINY = ["--short-side", "native", "--size-multiple", "8", "--device", "cpu"]


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture()
def gt_results(synthetic_root: Path, tmp_path: Path) -> Path:
    """A results folder holding copies of the ground truth (a perfect submission)."""
    results = tmp_path / "results"
    shutil.copytree(synthetic_root / "DAVIS" / "Annotations" / "480p", results)
    return results


def middle_frame(synthetic_root: Path, results: Path) -> tuple[Path, int]:
    """A result file that the scorer reads (not the first or last frame), and its sequence's object count."""
    seq = open_davis(synthetic_root / "DAVIS")[0]
    return results / seq.name / f"{seq.frame_ids[1]}.png", int(read_id_png(seq.masks[0]).max())


def test_davis_score_of_the_ground_truth_is_perfect(synthetic_root: Path, gt_results: Path,
                                                    tmp_path: Path) -> None:
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", gt_results,
                       "--json", tmp_path / "m.json")
    assert code == 0, output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["J&F-Mean"] == 1.0 and set(metrics) >= {"J-Decay", "F-Recall", "per_object"}
    assert "| sequence |" in output


def test_missing_sequence_is_named(synthetic_root: Path, gt_results: Path) -> None:
    seq = open_davis(synthetic_root / "DAVIS")[-1]
    shutil.rmtree(gt_results / seq.name)
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", gt_results)
    assert code == 2 and str(gt_results / seq.name) in output and "missing" in output


def test_missing_frame_is_named(synthetic_root: Path, gt_results: Path) -> None:
    path, _ = middle_frame(synthetic_root, gt_results)
    path.unlink()
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", gt_results)
    assert code == 2 and str(path) in output


def test_wrong_size_result_is_named(synthetic_root: Path, gt_results: Path) -> None:
    path, _ = middle_frame(synthetic_root, gt_results)
    write_id_png(path, np.zeros((10, 12), np.uint8))
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", gt_results)
    assert code == 2 and str(path) in output and "12x10" in output


def test_id_above_the_object_count_is_named(synthetic_root: Path, gt_results: Path) -> None:
    path, n_objects = middle_frame(synthetic_root, gt_results)
    ids = read_id_png(path).copy()
    ids[0, 0] = n_objects + 1
    write_id_png(path, ids)
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", gt_results)
    assert code == 2 and str(path) in output and f"object id {n_objects + 1}" in output


def test_rgb_png_is_named(synthetic_root: Path, gt_results: Path) -> None:
    path, _ = middle_frame(synthetic_root, gt_results)
    rgb = Image.open(path).convert("RGB")
    rgb.save(path)
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", gt_results)
    assert code == 2 and str(path) in output and "RGB" in output


def test_missing_davis_root_and_missing_feature_choice_fail(synthetic_root: Path, tmp_path: Path) -> None:
    code, output = run("davis-score", "--davis-root", tmp_path / "nope", "--results", tmp_path)
    assert code == 2 and "nope" in output
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", tmp_path / "o", *TINY)
    assert code == 2 and "--pixels" in output
    code, output = run("davis", "--davis-root", tmp_path, "--out", tmp_path / "o", "--pixels", *TINY)
    assert code == 2 and "JPEGImages" in output


def test_davis_pixels_writes_results_that_davis_score_reproduces(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pixels"
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", out, "--pixels",
                       "--patch-size", "8", "--topk", "5", *TINY)
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["topk"] == 5 and metrics["settings"]["short_side"] is None
    code, _ = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", out, "--json",
                  tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert code == 0 and again["J&F-Mean"] == metrics["J&F-Mean"] and again["per_object"] == metrics["per_object"]
    assert not list(out.rglob(".*.tmp"))


@pytest.fixture()
def tiny_checkpoint(tmp_path: Path) -> Path:
    from model.checkpoint import save_checkpoint
    from model.config import model_config
    from model.siammae import SiamMAE

    cfg = model_config("vit_micro_patch8")
    torch.manual_seed(1)
    path = tmp_path / "ckpt" / "latest.pt"
    save_checkpoint(path, {"model": SiamMAE(cfg).state_dict(), "model_config": cfg.to_dict()})
    return path


def test_compare_writes_three_results_a_report_and_a_figure(synthetic_root: Path, tiny_checkpoint: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code, output = run("compare", "--checkpoint", tiny_checkpoint, "--davis-root", synthetic_root / "DAVIS",
                       "--out", out, "--queue", "4", *TINY)
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["trained", "random_init", "pixels"]
    for name in metrics:
        assert {"J&F-Mean", "J-Mean", "F-Mean", "per_object", "settings"} <= set(metrics[name])
    assert "| trained |" in output and "| random_init |" in output
    report = (out / "report.md").read_text()
    assert "overlay.png" in report and "| pixels |" in report
    assert Image.open(out / "overlay.png").size[0] > 100


def test_checkpoint_that_is_not_one_is_named(synthetic_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", tmp_path / "o",
                       "--checkpoint", bad, *TINY)
    assert code == 2 and str(bad) in output


def test_jhmdb_and_vip_commands_run(synthetic_root: Path, tmp_path: Path) -> None:
    code, output = run("jhmdb", "--jhmdb-root", synthetic_root / "JHMDB", "--out", tmp_path / "j", "--pixels",
                       "--size", "64x96", "--device", "cpu")
    assert code == 0 and "PCK@0.1" in output, output
    assert "PCK@0.2" in json.loads((tmp_path / "j" / "metrics.json").read_text())
    code, output = run("vip", "--vip-root", synthetic_root / "VIP", "--out", tmp_path / "v", "--pixels",
                       "--patch-size", "8", "--long-side", "96", "--size-multiple", "8", "--device", "cpu")
    assert code == 0 and "mIoU" in output, output


def test_protocol_and_every_setting_are_recorded(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "dino"
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", out, "--pixels",
                       "--patch-size", "8", "--protocol", "dino", *TINY)
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    settings = metrics["settings"]
    assert metrics["protocol"] == settings["protocol"] == "dino" and metrics["score_on"] == "native"
    assert (settings["window"], settings["queue"], settings["norm_mask"], settings["short_side"]) == \
        ("square", 7, True, None)                                             # TINY overrides only the size
    report = (out / "report.md").read_text()
    assert "Protocol: dino" in report and "temperature=0.1" in report and "label_downsample=nearest-centre" in report
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", out, "--pixels",
                       "--protocol", "mae", *TINY)
    assert code == 2 and "mae" in output


def test_score_on_protocol_size_is_an_explicit_recorded_option(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", out, "--pixels",
                       "--patch-size", "8", "--size", "48x80", "--score-on", "protocol-size", "--device", "cpu")
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["score_on"] == "protocol-size" and metrics["settings"]["fixed_size"] == [48, 80]
    path, _ = middle_frame(synthetic_root, out)
    assert read_id_png(path).shape == (48, 80)
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", out,
                       "--score-on", "protocol-size", "--json", tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert code == 0 and again["J&F-Mean"] == metrics["J&F-Mean"] and again["score_on"] == "protocol-size"
    code, output = run("davis-score", "--davis-root", synthetic_root / "DAVIS", "--results", out)
    assert code == 2 and "48" in output                                       # native scoring: sizes differ


def test_an_input_size_the_patch_does_not_divide_is_a_one_line_error(synthetic_root: Path, tmp_path: Path) -> None:
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", tmp_path / "o", "--pixels",
                       "--size", "50x90", "--device", "cpu")
    assert code == 2 and "50x90" in output and "patch size 16" in output and "Traceback" not in output
