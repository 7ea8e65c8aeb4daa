"""siammae-eval and siammae-export at the edge: a checkpoint with NaN weights or a damaged one is refused in
one line that names it once; bad numbers, an --out that is a file, a --timm that is a folder and a second
writer into an --out are one line, exit 2, before any work and leaving nothing behind."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from model.checkpoint import save_checkpoint
from model.config import model_config
from model.siammae import SiamMAE
from siammae_common.folder_lock import folder_lock


def run(module: str, *argv: object) -> Result:
    return CliRunner().invoke(importlib.import_module(module).main, [str(a) for a in argv])


def one_line_exit_2(done: Result, *expected: str) -> str:
    lines = [line for line in done.output.strip().splitlines() if not line.startswith("warning:")]
    assert done.exit_code == 2 and len(lines) == 1 and "Traceback" not in done.output, done.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def checkpoint(path: Path, damage: str | None = None) -> Path:
    cfg = model_config("vit_micro_patch16")
    weights = SiamMAE(cfg).state_dict()
    if damage == "nan":
        weights["blocks.0.attn.qkv.weight"][0, :3] = float("nan")
    if damage == "inf":
        weights["norm.weight"][1] = float("inf")
    save_checkpoint(path, {"model": weights, "model_config": cfg.to_dict(), "step": 1})
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    return path


def evaluate(davis: Path, out: Path, *extra: object) -> Result:
    return run("evaluation.cli", "davis", "--davis-root", davis, "--out", out, "--device", "cpu", *extra)


@pytest.mark.parametrize("damage", ["nan", "inf", "truncated"])
def test_a_checkpoint_that_is_not_usable_is_refused_naming_it_once(synthetic_root: Path, tmp_path: Path,
                                                                   damage: str) -> None:
    path = checkpoint(tmp_path / "run" / "latest.pt", damage)
    expected = "NaN or infinite" if damage != "truncated" else "damaged"
    line = one_line_exit_2(evaluate(synthetic_root / "DAVIS", tmp_path / "eval", "--checkpoint", path), expected)
    assert line.count(str(path)) == 1
    line = one_line_exit_2(run("model.export", path, "--timm", tmp_path / "x.pth"), expected)
    assert line.count(str(path)) == 1
    assert not (tmp_path / "eval").exists() and not (tmp_path / "x.pth").exists()


def test_export_to_a_folder_is_one_line(tmp_path: Path) -> None:
    path = checkpoint(tmp_path / "latest.pt")
    (tmp_path / "exports").mkdir()
    one_line_exit_2(run("model.export", path, "--timm", tmp_path / "exports"), "is a folder", "encoder.pth")
    assert list((tmp_path / "exports").iterdir()) == []


@pytest.mark.parametrize("extra", [["--size", "0x0"], ["--size", "-16x32"], ["--short-side", "0"],
                                   ["--long-side", "0"], ["--radius", "nan"], ["--temperature", "inf"],
                                   ["--workers", "-1"], ["--seed", "-1"], ["--patch-size", "0"]],
                         ids=lambda a: " ".join(a))
def test_bad_numbers_are_one_line_before_any_work(synthetic_root: Path, tmp_path: Path, extra: list[str]) -> None:
    done = evaluate(synthetic_root / "DAVIS", tmp_path / "eval", "--pixels", *extra)
    one_line_exit_2(done)
    assert not (tmp_path / "eval").exists()


def test_an_out_that_is_a_file_or_in_use_is_one_line(synthetic_root: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    one_line_exit_2(evaluate(synthetic_root / "DAVIS", tmp_path / "file", "--pixels"), "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "keep"
    with folder_lock(tmp_path / "busy"):              # another siammae-eval writing there
        one_line_exit_2(evaluate(synthetic_root / "DAVIS", tmp_path / "busy", "--pixels"), "in use by")
        assert [p.name for p in (tmp_path / "busy").iterdir()] == [".siammae.lock"]


def test_non_finite_weights_are_refused_when_loading_for_any_use(tmp_path: Path) -> None:
    from model.checkpoint import CheckpointError, load_checkpoint

    path = checkpoint(tmp_path / "latest.pt", "nan")
    with pytest.raises(CheckpointError, match=r"\(3 in blocks.0.attn.qkv.weight\)"):
        load_checkpoint(path)
    assert torch.isfinite(load_checkpoint(checkpoint(tmp_path / "ok.pt"))["model"]["norm.weight"]).all()
