"""make_shards with two writers, damaged or foreign state, and bad numbers: one writer per folder (per
--part), refusals in one line that say what to run, nothing half-written, obsolete failures forgotten."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from PIL import Image
from test_make_shards_cluster import _without_root_powers
from video_corpus import write_class_clips

import tools.make_shards as make_shards_tool
from pipeline import shard_reader as sr
from siammae_common.console import UserError
from siammae_common.folder_lock import writer_of
from tools.sharding.decode import DecodeOptions

TOOL = str(REPO / "tools" / "make_shards.py")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six short clips in two class folders."""
    return write_class_clips(tmp_path_factory.mktemp("writer_videos"), classes=2, per_class=3, seconds=0.6)


def run(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, TOOL, *args], capture_output=True, text=True, check=False,
                          cwd=REPO)


def one_line_exit_2(done: subprocess.CompletedProcess, *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def frozen_while_writing(args: list[str], out: Path) -> subprocess.Popen:
    """A make_shards run, stopped (SIGSTOP) once it holds `out`'s lock: a writer that is surely at work."""
    proc = subprocess.Popen([sys.executable, TOOL, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    deadline = time.monotonic() + 120
    while f"pid {proc.pid} " not in (writer_of(out) or ""):
        assert proc.poll() is None, f"it ended before it was seen holding {out}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{out} never showed a writer"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGSTOP)
    return proc


@pytest.mark.parametrize("second", [["--quality", "90"], ["--quality", "40"]], ids=["same", "other-quality"])
def test_a_second_make_shards_into_a_folder_being_written_is_refused(videos: Path, tmp_path: Path,
                                                                    second: list[str]) -> None:
    out = tmp_path / "out"
    first = frozen_while_writing([str(videos), "--out", str(out), "--workers", "1", "--quality", "90"], out)
    try:
        refused = run(str(videos), "--out", str(out), "--workers", "1", *second)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    one_line_exit_2(refused, f"pid {first.pid} ", "in use by make_shards.py", "--out")
    manifest = sr.read_manifest(out)
    assert manifest.complete and manifest.options["quality"] == 90 and manifest.clips == 6
    for shard in manifest.shards:                    # every frame of every clip decodes: no mixed writers
        for clip in sr.iter_clips(shard.tar):
            for i in range(clip.n_frames):
                Image.open(io.BytesIO(clip.frame(i))).load()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("args", [["--fps", "nan"], ["--fps", "inf"], ["--fps", "-2"], ["--seed", "-1"],
                                  ["--quality", "nan"]])
def test_non_finite_or_out_of_range_numbers_are_refused_before_any_work(videos: Path, tmp_path: Path,
                                                                         args: list[str]) -> None:
    out = tmp_path / "out"
    one_line_exit_2(run(str(videos), "--out", str(out), *args), args[0])
    assert not out.exists()


@pytest.mark.parametrize("damage", ["not-json", "wrong-types"])
def test_resuming_over_a_damaged_manifest_is_one_line_and_overwrite_starts_over(videos: Path, tmp_path: Path,
                                                                                damage: str) -> None:
    out = tmp_path / "out"
    make_shards_tool.make_shards(videos, out, shard_size="2clips", workers=1)
    manifest = out / "manifest.json"
    if damage == "not-json":
        manifest.write_text('{"format": "siammae-clip-shards", "shards": [')
    else:
        doc = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**doc, "shards": 5, "failures": "none"}))
    refused = run(str(videos), "--out", str(out), "--shard-size", "2clips", "--workers", "1")
    one_line_exit_2(refused, str(manifest), "not a valid shard manifest", "--overwrite")
    again = run(str(videos), "--out", str(out), "--shard-size", "2clips", "--workers", "1", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert sr.read_manifest(out).complete and sr.read_manifest(out).clips == 6


def _part(videos: Path, out: Path, part: int, quality: int) -> sr.Manifest:
    return make_shards_tool.make_shards(videos, out, part=(part, 2), shard_size="2clips", workers=1,
                                        options=DecodeOptions(quality=quality))


def test_a_merge_that_cannot_write_its_manifest_is_one_line(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    _part(videos, out, 1, 90)
    _part(videos, out, 2, 90)
    (out / "manifest.json").unlink()
    (out / "manifest.json").mkdir()                     # something in the way that even root cannot replace
    one_line_exit_2(run("--merge", str(out)), "manifest.json: cannot write it", "--merge")
    (out / "manifest.json").rmdir()
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)               # a folder others may read but this user not write
    try:
        refused = run("--merge", str(out), prefix=tuple(_without_root_powers()))
    finally:
        out.chmod(0o755)
    one_line_exit_2(refused, f"--merge {out}: output folder is not writable")
    assert not (out / "manifest.json").exists()


def test_merging_parts_made_with_other_options_gives_a_command_that_works(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    _part(videos, out, 1, 90)
    with pytest.raises(UserError, match="part 2/2 was made with other options"):   # its own merge at the end
        _part(videos, out, 2, 40)
    assert not (out / "manifest.json").exists()
    refused = run("--merge", str(out))
    one_line_exit_2(refused, "part 2/2 was made with other options", "quality 40 there, 90 in part 1")
    command = refused.stderr.split("remake it with theirs: ")[1].split("; then --merge")[0]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "tools/make_shards.py"] and "--overwrite" in argv
    remade = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, check=False, cwd=REPO)
    assert remade.returncode == 0, remade.stderr                # it merges by itself as the last part
    merged = sr.read_manifest(out)
    assert merged.complete and merged.options["quality"] == 90 and merged.clips == 6
    assert run("--merge", str(out)).returncode == 0


def test_a_plain_rerun_forgets_the_failure_of_a_folder_it_can_read_now(videos: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(videos, src)
    (src / "C1").chmod(stat.S_IWUSR | stat.S_IXUSR)     # not readable: its clips are not listed
    try:
        first = run(str(src), "--out", str(out), "--workers", "1", prefix=tuple(_without_root_powers()))
    finally:
        (src / "C1").chmod(0o755)
    assert first.returncode == 0, first.stderr
    assert [f.source for f in sr.read_manifest(out).failures] == ["C1/"]
    second = run(str(src), "--out", str(out), "--workers", "1")
    assert second.returncode == 0, second.stderr
    manifest = sr.read_manifest(out)
    assert manifest.failures == [] and manifest.clips == 6 and manifest.complete


@pytest.mark.parametrize("bad", [{"fps": float("nan")}, {"fps": float("inf")}, {"fps": 0.0}, {"quality": 0},
                                 {"short_side": 4}, {"min_frames": 0}])
def test_decode_options_refuse_what_the_command_line_refuses(bad: dict) -> None:
    """Callers of make_shards() in Python get the same checks as the command line."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        DecodeOptions(**bad)
