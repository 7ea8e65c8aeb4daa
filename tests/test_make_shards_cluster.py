"""make_shards at cluster scale and under a hostile environment: concurrent --part runs into one folder and
--merge, decoders and workers killed from outside, --retry-failed, unreadable folders, kill -9."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from video_corpus import FFMPEG, ffmpeg, lavfi_source, write_class_clips

import tools.make_shards as make_shards_tool
import tools.sharding.decode as decode_module
from pipeline import shard_format as sf
from pipeline import shard_reader as sr
from pipeline.frame_index import FrameIndex

TOOL = str(REPO / "tools" / "make_shards.py")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve short clips in three class folders, and one file that is not a video."""
    root = write_class_clips(tmp_path_factory.mktemp("cluster_videos"), classes=3, per_class=4, seconds=0.4)
    (root / "C0" / "broken.avi").write_bytes(b"RIFF not really")
    return root


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, check=False, **kw)


def keys_of(manifest: sf.Manifest) -> list[str]:
    return [k for s in manifest.shards for k in sr.read_index_keys(s.index)]


def test_parts_running_at_once_share_a_folder_and_merge_to_a_single_runs_clips(videos: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "parts"
    out.mkdir()
    # another part's shard in progress: the old make_shards deleted every NAME-*.tar.tmp when it started
    foreign = out / "shards-000001.tar.tmp"
    foreign.write_bytes(b"part 2 is writing this")
    make_shards_tool.make_shards(videos, out, part=(1, 3), shard_size="2clips", workers=1)
    assert foreign.read_bytes() == b"part 2 is writing this"
    foreign.unlink()
    shutil.rmtree(out)
    procs = [subprocess.Popen([sys.executable, TOOL, str(videos), "--out", str(out), "--part", f"{k}/3",
                               "--shard-size", "2clips", "--workers", "1"], stderr=subprocess.PIPE, text=True)
             for k in (1, 2, 3)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    merged = run("--merge", str(out))
    assert merged.returncode == 0, merged.stderr
    whole = sr.read_manifest(out)
    single = make_shards_tool.make_shards(videos, tmp_path / "single", workers=2)
    assert sorted(keys_of(whole)) == sorted(keys_of(single)) and len(set(keys_of(whole))) == len(keys_of(whole))
    assert [f.source for f in whole.failures] == ["C0/broken.avi"] and whole.complete
    assert whole.options["parts"] == 3 and "part" not in whole.options
    index = FrameIndex.open(out)                      # the loaders read a merged folder
    assert sorted(index.keys()) == sorted(keys_of(single))


def test_merge_refuses_a_missing_or_incomplete_part(videos: Path, tmp_path: Path) -> None:
    out, tool = tmp_path / "parts", make_shards_tool
    for k in (1, 2):
        assert tool.make_shards(videos, out, part=(k, 3), workers=1).complete
    missing = run("--merge", str(out))
    assert missing.returncode == 2 and "part 3/3 is missing" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (out / "manifest.json").exists()
    tool.make_shards(videos, out, part=(3, 3), workers=1)
    (out / "manifest.json").unlink()                  # written by the part that finished last
    part2 = out / "manifest-part2-of-3.json"
    raw = json.loads(part2.read_text())
    part2.write_text(json.dumps(raw | {"complete": False}))
    incomplete = run("--merge", str(out))
    assert incomplete.returncode == 2 and "part 2/3 is incomplete" in incomplete.stderr
    assert not (out / "manifest.json").exists()
    other_n = run(str(videos), "--out", str(out), "--part", "1/2")
    assert other_n.returncode == 2 and "--part K/3" in other_n.stderr


def _fake_ffmpeg(tmp_path: Path, action: str) -> Path:
    """An ffmpeg that runs `action` (shell) for clip1 of class C1 and is the real ffmpeg for every other file."""
    script = tmp_path / "ffmpeg"
    script.write_text(f'#!/bin/sh\ncase "$*" in *C1/clip1.avi*) {action} ;; esac\nexec "{FFMPEG}" "$@"\n')
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("action, workers", [("kill -KILL $$", 1), ("kill -KILL $PPID; sleep 5", 2)],
                         ids=["decoder-killed", "worker-killed"])
def test_a_clip_killed_by_the_environment_is_not_a_bad_input_and_a_rerun_retries_it(
        videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str, workers: int) -> None:
    tool = make_shards_tool
    fake = str(_fake_ffmpeg(tmp_path, action))
    monkeypatch.setattr("imageio_ffmpeg.get_ffmpeg_exe", lambda: fake)
    first = tool.make_shards(videos, tmp_path / "o", workers=workers)
    assert not first.complete and "C1/clip1.avi" not in {f.source for f in first.failures}
    assert len(keys_of(first)) == 11
    monkeypatch.undo()
    second = tool.make_shards(videos, tmp_path / "o", workers=workers)
    assert second.complete and "C1__clip1" in keys_of(second) and len(keys_of(second)) == 12


def test_retry_failed_retries_recorded_failures(videos: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(videos, src)
    out = tmp_path / "o"
    assert run(str(src), "--out", str(out), "--workers", "1").returncode == 0
    assert [f.source for f in sr.read_manifest(out).failures] == ["C0/broken.avi"]
    shutil.copy(src / "C0" / "clip0.avi", src / "C0" / "broken.avi")          # the user fixed the file
    assert "nothing to do" in run(str(src), "--out", str(out)).stderr
    assert run(str(src), "--out", str(out), "--retry-failed", "--workers", "1").returncode == 0
    manifest = sr.read_manifest(out)
    assert manifest.complete and not manifest.failures and "C0__broken" in keys_of(manifest)


def _without_root_powers() -> list[str]:
    """A command prefix that makes root obey file permissions (drops CAP_DAC_*), or [] for other users."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_unreadable_folders_and_broken_links_are_failures_not_a_crash(videos: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "ok").mkdir(parents=True)
    shutil.copy(videos / "C0" / "clip0.avi", src / "ok" / "good.avi")
    for name in ("no_read", "no_search"):
        (src / name).mkdir()
        shutil.copy(videos / "C0" / "clip1.avi", src / name / "inside.avi")
    (src / "no_read").chmod(stat.S_IWUSR | stat.S_IXUSR)          # the old make_shards skipped it silently
    (src / "no_search").chmod(stat.S_IRUSR | stat.S_IWUSR)        # the old make_shards crashed on it
    (src / "ok" / "dangling.mp4").symlink_to(src / "gone.mp4")    # the old make_shards skipped it silently
    try:
        r = subprocess.run([*_without_root_powers(), sys.executable, TOOL, str(src), "--out", str(out),
                            "--workers", "1"], capture_output=True, text=True, check=False)
    finally:
        for name in ("no_read", "no_search"):
            (src / name).chmod(0o755)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    manifest = sr.read_manifest(out)
    reasons = {f.source: f.reason for f in manifest.failures}
    assert reasons["no_read/"].startswith("folder not readable")
    assert reasons["no_search/inside.avi"].startswith("cannot read")
    assert reasons["ok/dangling.mp4"].startswith("broken symbolic link")
    assert keys_of(manifest) == ["ok__good"]


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_kill_9_leaves_no_worker_or_ffmpeg_behind(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        ffmpeg(*lavfi_source(4, "320x240"), "-c:v", "mpeg4", str(src / f"long{i}.avi"))
    proc = subprocess.Popen([sys.executable, TOOL, str(src), "--out", str(tmp_path / "o"), "--workers", "2"],
                            stderr=subprocess.DEVNULL)
    deadline, tree = time.monotonic() + 20, set()
    while time.monotonic() < deadline and proc.poll() is None:
        tree = _descendants(proc.pid)
        names = [Path(f"/proc/{p}/comm").read_text().strip() for p in tree if _alive(p)]
        if sum(n.startswith("ffmpeg") for n in names) >= 1 and len(names) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "make_shards finished before the test could kill it"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.05)
    assert not [p for p in tree if _alive(p)], "processes left behind after kill -9"


def test_a_full_disk_stops_the_run_with_one_line_and_a_rerun_resumes(videos: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tool = make_shards_tool
    from tools.sharding.format_writer import ShardWriter
    real_add, calls = ShardWriter.add, []

    def add_until_full(self, *args, **kwargs):
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(1)
        real_add(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, "add", add_until_full)
    out = tmp_path / "o"
    with pytest.raises(tool.EnvironmentFailure, match="no space left"):
        tool.make_shards(videos, out, shard_size="2clips", workers=1)
    stopped = sr.read_manifest(out)
    assert len(stopped.shards) == 2 and not stopped.complete and not list(out.glob("*.tmp"))
    assert [f.source for f in stopped.failures] in ([], ["C0/broken.avi"])     # nothing blamed on the inputs
    monkeypatch.undo()
    resumed = tool.make_shards(videos, out, shard_size="2clips", workers=1)
    assert resumed.complete and len(keys_of(resumed)) == 12 == len(set(keys_of(resumed)))


def test_out_of_memory_in_a_worker_is_an_environment_failure(videos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decode = decode_module

    def no_memory(*_):
        raise MemoryError

    monkeypatch.setattr(decode, "encode_jpeg", no_memory)
    job = decode.DecodeJob(str(videos / "C0" / "clip0.avi"), "C0/clip0.avi", "k", "C0", 0, decode.DecodeOptions())
    result = decode.decode_video(job)
    assert result.deferred == "out of memory" and result.error is None and result.frames is None
