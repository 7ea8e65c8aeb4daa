"""A run is tied to its folder, its data and its options: one trainer per --out; shards that are unfinished,
listed twice or of other sizes are refused with the command that repairs them; --resume with other data or
run-defining options is refused (one line listing every change) unless --resume-anyway, which config.json's
history records; config.json never claims options that did not make the weights; a damaged checkpoint or a
full disk is one line, leaving nothing half-written."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from coded_shards import write_coded_shards

from model.checkpoint import load_checkpoint, save_checkpoint
from model.train_cli import main
from siammae_common.folder_lock import folder_lock, writer_of

N_FRAMES = [12, 9, 14, 10, 11, 13, 12, 10]       # 16 pairs an epoch: 4 steps of 4
TINY = ["--model", "vit_micro_patch16", "--input-size", "32", "--batch-size", "4", "--device", "cpu",
        "--loader", "wds", "--num-workers", "0", "--warmup-steps", "1", "--max-steps", "4", "--log-every", "1",
        "--recon-every", "1000", "--torch-threads", "1", "--threads", "1", "--gap-min", "2", "--gap-max", "6"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def cli(shards: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--shards", str(shards), "--out", str(out), *TINY, *extra])
    return result.exit_code, result.output


def one_line(code: int, output: str, status: int, *expected: str) -> str:
    lines = output.strip().splitlines()
    assert code == status and len(lines) == 1 and "Traceback" not in output, output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("identity") / "shards", N_FRAMES, height=32, width=40,
                              clips_per_shard=3)


@pytest.fixture(scope="module")
def stopped_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two of four steps done (checkpoints/latest.pt at step 2)."""
    out = tmp_path_factory.mktemp("identity_runs") / "run"
    code, output = cli(shards, out, "--stop-at-step", "2")
    assert code == 0, output
    return out


@pytest.fixture
def run(stopped_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(stopped_run, copy)
    return copy


def test_a_second_trainer_into_a_run_folder_in_use_is_refused(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "model.train_cli", "--shards", str(shards), "--out", str(out),
                              *TINY, "--max-steps", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while f"pid {first.pid} " not in (writer_of(out) or ""):
            assert first.poll() is None and time.monotonic() < deadline, "the first trainer never held its --out"
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)             # surely at work while the second one starts
        for extra in ([], ["--resume"], ["--overwrite"]):
            one_line(*cli(shards, out, *extra), 2, f"--out {out}: in use by", f"pid {first.pid} ")
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("damage", ["incomplete", "listed-twice", "other-size"])
def test_a_shard_set_that_is_not_whole_is_refused_with_the_command_that_repairs_it(
        shards: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    if damage == "incomplete":
        manifest["complete"] = False
        expected = ("incomplete", "finish it with: python tools/make_shards.py", "--allow-incomplete")
    elif damage == "listed-twice":
        manifest["shards"].append(manifest["shards"][0])
        expected = ("lists coded-000000.tar 2 times", "--overwrite")
    else:
        with (copy / "coded-000001.tar").open("ab") as f:
            f.write(bytes(512))
        expected = ("coded-000001.tar: ", "the manifest says", "--overwrite")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    one_line(*cli(copy, tmp_path / "run"), 2, *expected)
    assert not (tmp_path / "run").exists()
    if damage == "incomplete":
        code, output = cli(copy, tmp_path / "run", "--allow-incomplete", "--max-steps", "1")
        assert code == 0, output


def test_a_shard_folder_being_written_names_its_writer(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with folder_lock(copy):                            # as make_shards holds it while it writes
        one_line(*cli(copy, tmp_path / "run"), 2, "make_shards is still writing this folder", f"pid {os.getpid()}")


@pytest.mark.parametrize("change", ["seed", "batch-size", "epochs", "max-steps", "gap-max", "remade-shards"])
def test_resume_with_other_data_or_options_is_refused_and_changes_nothing(
        run: Path, shards: Path, tmp_path: Path, change: str) -> None:
    config, latest = (run / "config.json").read_bytes(), (run / "checkpoints" / "latest.pt").read_bytes()
    args = {"seed": ["--seed", "1"], "batch-size": ["--batch-size", "8"], "epochs": ["--epochs", "3"],
            "max-steps": ["--max-steps", "6"], "gap-max": ["--gap-max", "5"], "remade-shards": []}[change]
    expected = {"seed": "--seed 0 -> 1", "batch-size": "--batch-size 4 -> 8", "epochs": "--epochs 400 -> 3",
                "max-steps": "--max-steps 4 -> 6", "gap-max": "--gap-max 6 -> 5",
                "remade-shards": "shards: another set"}[change]
    data = shards
    if change == "remade-shards":                     # made again at the same path, from other clips
        data = write_coded_shards(tmp_path / "shards", list(reversed(N_FRAMES)), height=32, width=40,
                                  clips_per_shard=3)
    one_line(*cli(data, run, *args, "--resume"), 2, expected, "--resume-anyway", "latest.pt: made with other")
    assert (run / "config.json").read_bytes() == config
    assert (run / "checkpoints" / "latest.pt").read_bytes() == latest


def test_resume_anyway_goes_on_and_config_json_keeps_what_made_the_weights(run: Path, shards: Path) -> None:
    code, output = cli(shards, run, "--seed", "1", "--log-every", "2", "--resume", "--resume-anyway",
                       "--stop-at-step", "3")
    assert code == 0, output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["seed"] == 0                # the options that made steps 0-2
    [entry] = config["history"]
    assert entry["step"] == 2 and entry["resume_anyway"] == ["--seed 0 -> 1"]
    assert "--log-every 1 -> 2" in entry["changed"]
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["train_config"]["seed"] == 1
    code, output = cli(shards, run, "--seed", "1", "--resume")     # now the checkpoint's own options
    assert code == 0, output
    assert [e["step"] for e in json.loads((run / "config.json").read_text())["history"]] == [2, 3]


def test_the_same_shards_in_another_folder_resume_and_the_move_is_recorded(run: Path, shards: Path,
                                                                           tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(shards, moved)
    code, output = cli(moved, run, "--resume", "--stop-at-step", "3")
    assert code == 0, output
    [entry] = json.loads((run / "config.json").read_text())["history"]
    assert any(c.startswith("--shards ") for c in entry["changed"]) and "resume_anyway" not in entry


@pytest.mark.parametrize("damage", ["wrong-shape", "negative-step"])
def test_resuming_a_damaged_checkpoint_is_one_line(run: Path, shards: Path, damage: str) -> None:
    path = run / "checkpoints" / "latest.pt"
    state = load_checkpoint(path)
    if damage == "wrong-shape":
        state["model"]["decoder_pred.weight"] = state["model"]["decoder_pred.weight"][:-1]
        expected = "decoder_pred.weight"
    else:
        state["step"] = -3
        expected = "step -3"
    save_checkpoint(path, {k: v for k, v in state.items() if k != "version"})
    text = one_line(*cli(shards, run, "--resume"), 2, str(path), expected)
    assert text.count(str(path)) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE stands in for a full disk")
def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_leaves_the_old_one(run: Path,
                                                                                  shards: Path) -> None:
    latest = run / "checkpoints" / "latest.pt"
    before = latest.read_bytes()

    def small_files() -> None:                     # writes past 1 MB fail (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    done = subprocess.run([sys.executable, "-m", "model.train_cli", "--shards", str(shards), "--out", str(run),
                           *TINY, "--resume"], capture_output=True, text=True, check=False, preexec_fn=small_files)
    errors = [line for line in done.stderr.strip().splitlines() if line.startswith("Error")]
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(errors) == 1, done.stderr
    assert f"{latest}: cannot save the checkpoint" in errors[0] and "--resume" in errors[0]
    assert latest.read_bytes() == before
    assert not list((run / "checkpoints").glob(".*.tmp"))


def test_a_checkpoint_without_a_fingerprint_adopts_the_current_one_and_keeps_it(tmp_path: Path) -> None:
    from test_old_run_folder import ARGS, OLD_RUN
    from test_old_run_folder import N_FRAMES as OLD_FRAMES

    shards = write_coded_shards(tmp_path / "shards", OLD_FRAMES, height=32, width=40, clips_per_shard=3)
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    result = CliRunner().invoke(main, ["--shards", str(shards), "--out", str(run), *ARGS, "--resume",
                                       "--stop-at-step", "3"])
    assert result.exit_code == 0 and "adopting the current shard fingerprint" in result.output, result.output
    [entry] = json.loads((run / "config.json").read_text())["history"]
    assert entry["step"] == 2 and "adopted" in entry
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["data"]["clips"] == len(OLD_FRAMES)
    other = write_coded_shards(tmp_path / "other", list(reversed(OLD_FRAMES)), height=32, width=40,
                               clips_per_shard=3)
    result = CliRunner().invoke(main, ["--shards", str(other), "--out", str(run), *ARGS, "--resume"])
    one_line(result.exit_code, result.output, 2, "shards: another set")
