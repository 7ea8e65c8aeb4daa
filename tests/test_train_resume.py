"""siammae-train over damaged shards and across interruptions: bad frames are skipped, named and counted;
a resumed run matches the uninterrupted one bit for bit; --resume never silently starts over; a run
folder is never overwritten by accident; any kept checkpoint resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from coded_shards import damage_in_plan, write_coded_shards

from model.checkpoint import load_checkpoint
from model.train_cli import main
from pipeline.config import PairSamplingConfig

N_FRAMES = [40, 10, 60, 3, 50, 2, 45, 30, 25, 35, 20, 50]     # 24 pairs an epoch: 6 steps of 4
S = 32
DAMAGE = damage_in_plan(N_FRAMES, PairSamplingConfig(crop_size=S))
BAD = {(f"clip{c:04d}", f) for c, f in DAMAGE}
TINY = ["--model", "vit_micro_patch16", "--input-size", str(S), "--batch-size", "4", "--device", "cpu",
        "--warmup-steps", "2", "--blr", "0.01", "--log-every", "1", "--recon-every", "1000", "--torch-threads", "1",
        "--threads", "1", "--num-workers", "1", "--bad-frame-limit", "0.5"]


def train(shards: Path, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process, as a user would run it."""
    argv = [sys.executable, "-m", "model.train_cli", "--shards", str(shards), "--out", str(out), *TINY, *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def cli(shards: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--shards", str(shards), "--out", str(out), *TINY, *extra])
    return result.exit_code, result.output


def rows(run: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Runs in this process set torch's thread count (--torch-threads 1); the tests after them keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("damaged"), N_FRAMES, clips_per_shard=5, damage=DAMAGE)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("clean"), N_FRAMES, clips_per_shard=5)


@pytest.fixture(scope="module")
def straight(damaged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs over the damaged shards, uninterrupted, keeping a checkpoint every epoch."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    train(damaged, out, "--max-steps", "12", "--save-every", "1")
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Bit for bit: every logged loss and lr, and every weight."""
    ra, rb = rows(a), rows(b)
    assert [r["step"] for r in rb] == list(range(1, 13))
    assert [(r["loss"], r["lr"]) for r in ra] == [(r["loss"], r["lr"]) for r in rb]
    wa, wb = weights(a / "checkpoints" / "latest.pt"), weights(b / "checkpoints" / "latest.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_a_run_over_damaged_frames_completes_names_them_and_resumes_bit_for_bit(
        straight: Path, damaged: Path, tmp_path: Path) -> None:
    logged = rows(straight, "bad_frames.jsonl")
    assert {(r["key"], r["frame"]) for r in logged} == BAD and len(logged) == len(BAD)   # exactly, once each
    assert {"shard", "key", "frame", "error"} <= set(logged[0])

    out = tmp_path / "resumed"
    train(damaged, out, "--max-steps", "12", "--stop-at-step", "3")      # mid-epoch 0
    train(damaged, out, "--max-steps", "12", "--stop-at-step", "8", "--resume")   # mid-epoch 1: ledger restored
    done = train(damaged, out, "--max-steps", "12", "--resume")
    assert "resumed from" in done.stderr
    assert_same_run(straight, out)
    resumed = rows(out, "bad_frames.jsonl")
    assert {(r["key"], r["frame"]) for r in resumed} == BAD and len(resumed) == len(BAD)


def test_the_webdataset_loader_names_the_same_frames(damaged: Path, tmp_path: Path) -> None:
    code, output = cli(damaged, tmp_path / "wds", "--max-steps", "6", "--loader", "wds")
    assert code == 0, output
    assert {(r["key"], r["frame"]) for r in rows(tmp_path / "wds", "bad_frames.jsonl")} == BAD


def test_broadly_damaged_shards_stop_the_run_with_a_clear_message(damaged: Path, tmp_path: Path) -> None:
    code, output = cli(damaged, tmp_path / "stop", "--max-steps", "6", "--bad-frame-limit", "0.001")
    assert code == 2, output
    assert "pairs of epoch 0" in output.splitlines()[-1] and "--bad-frame-limit 0.001" in output.splitlines()[-1]


@pytest.mark.slow
def test_any_kept_checkpoint_resumes_exactly(straight: Path, damaged: Path, tmp_path: Path) -> None:
    kept = load_checkpoint(straight / "checkpoints" / "epoch_0001.pt")
    assert kept["step"] == 6 and {"optimizer", "rng", "bad_frames", "schedule"} <= set(kept)
    same = tmp_path / "same"                              # back to epoch 1 in the run's own folder
    shutil.copytree(straight, same)
    train(damaged, same, "--max-steps", "12", "--resume-from", str(same / "checkpoints" / "epoch_0001.pt"))
    assert_same_run(straight, same)                       # metrics rows after step 6 were replaced, not doubled
    fork = tmp_path / "fork"                              # or into a new folder
    train(damaged, fork, "--max-steps", "12", "--resume-from", str(straight / "checkpoints" / "epoch_0001.pt"))
    wa, wb = weights(straight / "checkpoints" / "latest.pt"), weights(fork / "checkpoints" / "latest.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture()
def short_run(clean: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    code, output = cli(clean, out, "--max-steps", "2")
    assert code == 0, output
    return out


def test_resume_without_a_checkpoint_stops_unless_the_folder_holds_no_run(
        short_run: Path, clean: Path, tmp_path: Path) -> None:
    (short_run / "checkpoints" / "latest.pt").unlink()
    before = (short_run / "metrics.jsonl").read_text()
    code, output = cli(clean, short_run, "--max-steps", "4", "--resume")
    assert code == 2 and "no checkpoints/latest.pt" in output and "--overwrite" in output, output
    assert (short_run / "metrics.jsonl").read_text() == before
    code, output = cli(clean, tmp_path / "fresh", "--max-steps", "1", "--resume")     # no run yet: starts one
    assert code == 0, output


def test_a_run_folder_is_only_replaced_when_asked(short_run: Path, clean: Path) -> None:
    shutil.rmtree(short_run / "checkpoints")                # even a run with no checkpoint left is kept
    code, output = cli(clean, short_run, "--max-steps", "1")
    assert code == 2 and "already holds a run" in output, output
    assert len(rows(short_run)) == 2
    code, output = cli(clean, short_run, "--max-steps", "1", "--overwrite")
    assert code == 0, output
    assert [r["step"] for r in rows(short_run)] == [1]


def test_interrupted_saves_are_cleaned_up_and_checkpoints_get_the_users_mode(short_run: Path, clean: Path) -> None:
    stale = short_run / "checkpoints" / ".latest.pt.1234.deadbeef.tmp"
    stale.write_bytes(b"half a checkpoint")
    # a longer schedule than the checkpoint's: a change that --resume accepts only with --resume-anyway
    code, output = cli(clean, short_run, "--max-steps", "3", "--resume", "--resume-anyway")
    assert code == 0, output
    assert not stale.exists() and "interrupted checkpoint save" in output
    umask = os.umask(0)
    os.umask(umask)
    assert (short_run / "checkpoints" / "latest.pt").stat().st_mode & 0o777 == 0o666 & ~umask
