"""Checkpoints are loaded safely everywhere (siammae-eval --checkpoint, siammae-train --resume, siammae-ablate):
a crafted pickle is refused and runs nothing; a damaged file is one line naming it, exit 2."""

from __future__ import annotations

import importlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from ablation.grid import Schedule, build_grid
from model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from model.config import model_config
from model.siammae import SiamMAE

TINY = ["--model", "vit_micro_patch16", "--input-size", "32", "--batch-size", "4", "--device", "cpu",
        "--torch-threads", "1", "--max-steps", "2"]


class Payload:
    """Unpickling it (unsafely) would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path: Path, marker: Path, how: str) -> Path:
    """A 'checkpoint' whose loading would run a shell command: torch's own format, or a bare pickle."""
    cfg = model_config("vit_micro_patch16")
    state = {"model": {"x": Payload(marker)}, "model_config": cfg.to_dict(), "step": 1}
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "torch":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    return path


def damaged(path: Path, how: str, good: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"zero-bytes": b"", "truncated": good.read_bytes()[: good.stat().st_size // 2],
            "garbage": os.urandom(4096), "json": b'{"model": 1}'}.get(how)
    if data is None:                                  # wrong format: a valid torch file that is no checkpoint
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = model_config("vit_micro_patch16")
    path = tmp_path_factory.mktemp("good") / "latest.pt"
    save_checkpoint(path, {"model": SiamMAE(cfg).state_dict(), "model_config": cfg.to_dict(), "step": 1})
    return path


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "PWNED"
    path = crafted(tmp_path / "evil.pt", marker, how)
    for load in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=f"{path}: refused"):
            load(path)
    assert not marker.exists()


def test_a_latest_pt_of_the_older_format_is_refused_with_a_hint(tmp_path: Path) -> None:
    """Older runs kept numpy's RNG state (numpy arrays) in latest.pt: safe loading refuses it, and says so."""
    import numpy as np

    path = tmp_path / "latest.pt"
    torch.save({"model": {}, "model_config": {}, "rng": [{"numpy": np.random.get_state()}]}, path)
    with pytest.raises(CheckpointError, match=r"import numpy\..*older siammae.*epoch_\*\.pt load"):
        load_checkpoint(path)


def one_line(done: Result, path: Path) -> str:
    """The command's only error line, which names `path` (no traceback, no click 'Aborted!')."""
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and "Traceback" not in done.stderr and "Aborted" not in done.stderr
    return lines[0]


def run(module: str, *argv: object) -> Result:
    """A console entry point, in this process (the files are refused, so nothing runs either way)."""
    main = importlib.import_module(module).main
    return CliRunner().invoke(main, [str(a) for a in argv])


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_siammae_eval_refuses_a_crafted_checkpoint(synthetic_root: Path, tmp_path: Path, how: str) -> None:
    marker = tmp_path / "PWNED"
    path = crafted(tmp_path / "evil.pt", marker, how)
    done = run("evaluation.cli", "davis", "--davis-root", synthetic_root / "DAVIS", "--out", tmp_path / "o",
               "--checkpoint", path, "--device", "cpu")
    assert done.exit_code == 2 and "refused" in one_line(done, path)
    assert not marker.exists()


def test_siammae_train_resume_refuses_a_crafted_checkpoint(synthetic_shards: Path, tmp_path: Path) -> None:
    marker, out = tmp_path / "PWNED", tmp_path / "run"
    path = crafted(out / "checkpoints" / "latest.pt", marker, "torch")
    done = run("model.train_cli", "--shards", synthetic_shards, "--out", out, *TINY, "--resume")
    assert done.exit_code == 2 and "refused" in one_line(done, path)
    assert not marker.exists()


@pytest.mark.parametrize("stage", ["resume", "evaluate"])
def test_siammae_ablate_refuses_a_crafted_checkpoint(synthetic_root: Path, synthetic_shards: Path, tmp_path: Path,
                                                     stage: str) -> None:
    """The grid resumes its runs from latest.pt and evaluates their epoch_NNNN.pt: both loads are safe."""
    marker, out = tmp_path / "PWNED", tmp_path / "grid"
    schedule = Schedule(epochs=1, epoch_snapshots=(1,), batch_size=4, pairs_per_clip=2, input_size=32)
    (name,) = [r.name for r in build_grid("epochs", schedule)]
    entry = {"trained": True, "scores": {}} if stage == "evaluate" else {"scores": {}}
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"baselines": {"done": {}}, "runs": {name: entry}}))
    target = "epoch_0001.pt" if stage == "evaluate" else "latest.pt"
    path = crafted(out / name / "checkpoints" / target, marker, "torch")
    done = run("ablation.cli", "--shards", synthetic_shards, "--davis-root", synthetic_root / "DAVIS", "--out",
               out, "--grid", "epochs", "--model", "vit_micro_patch16", "--input-size", 32, "--batch-size", 4,
               "--pairs-per-clip", 2, "--epochs", 1, "--epoch-snapshots", "1", "--device", "cpu")
    assert done.exit_code == 2, done.output[-2000:]
    assert "refused" in done.stderr.splitlines()[-1] and str(path) in done.stderr.splitlines()[-1]
    assert not marker.exists()


@pytest.mark.parametrize("how", ["zero-bytes", "truncated", "garbage", "json", "wrong-format"])
def test_a_damaged_checkpoint_is_one_line_naming_it_and_exit_2(
        how: str, good_checkpoint: Path, synthetic_shards: Path, synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    path = damaged(out / "checkpoints" / "latest.pt", how, good_checkpoint)
    done = run("model.train_cli", "--shards", synthetic_shards, "--out", out, *TINY, "--resume")
    assert done.exit_code == 2
    one_line(done, path)
    done = run("evaluation.cli", "davis", "--davis-root", synthetic_root / "DAVIS", "--out", tmp_path / "o",
               "--checkpoint", path, "--device", "cpu")
    assert done.exit_code == 2
    one_line(done, path)
