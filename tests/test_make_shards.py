"""tools/make_shards.py on real videos made with ffmpeg (mpeg4, h264, mjpeg, VFR, audio, broken files)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from video_corpus import BAD, GOOD, ffmpeg_frame_count

import tools.make_shards as make_shards_tool
import tools.sharding.decode as decode_module
from pipeline import shard_reader as sr

TOOL = str(REPO / "tools" / "make_shards.py")


def _all_clips(out: Path) -> dict[str, sr.Clip]:
    return {c.key: c for s in sr.list_shards(out) for c in sr.iter_clips(s.tar)}


def test_frame_counts_equal_ffmpegs_own_count(video_dir: Path, shards: Path) -> None:
    clips = {c.meta["source"]: c for c in _all_clips(shards).values()}
    assert set(clips) == GOOD
    for source, clip in clips.items():
        assert clip.n_frames == ffmpeg_frame_count(video_dir / source), source
        assert clip.meta["n_frames"] == clip.n_frames


LUMA = np.array([0.299, 0.587, 0.114])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / max(float(np.mean((a - b) ** 2)), 1e-9)))


def test_frames_round_trip_visually(video_dir: Path, shards: Path) -> None:
    """Every stored JPEG is within a PSNR bound of the frame PyAV decodes from the source."""
    for clip in _all_clips(shards).values():
        with av.open(str(video_dir / clip.meta["source"])) as container:
            originals = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(originals) == clip.n_frames
        for i in (0, clip.n_frames // 2, clip.n_frames - 1):
            stored = np.asarray(Image.open(io.BytesIO(clip.frame(i))).convert("RGB"), dtype=np.float64)
            # testsrc2 at 64x48 has saturated 1-px colour detail that 4:2:0 chroma cannot keep, so the
            # bound on luma is tight (measured ~38 dB) and the one on RGB loose (~24 dB)
            assert _psnr(stored @ LUMA, originals[i] @ LUMA) > 34, (clip.key, i)
            assert _psnr(stored, originals[i].astype(np.float64)) > 20, (clip.key, i)


def test_jpegs_are_baseline_420(shards: Path) -> None:
    clip = next(iter(_all_clips(shards).values()))
    image = Image.open(io.BytesIO(clip.frame(0)))
    assert not image.info.get("progressive") and not image.info.get("progression")
    assert image.layer[1][1:3] == (1, 1) and image.layer[0][1:3] == (2, 2)    # chroma at half resolution


def test_manifest_totals_and_failures(shards: Path) -> None:
    manifest = sr.read_manifest(shards)
    raw = json.loads((shards / "manifest.json").read_text())
    clips = _all_clips(shards)
    assert manifest.complete and manifest.clips == len(clips) == len(GOOD) == raw["totals"]["clips"]
    assert manifest.frames == sum(c.n_frames for c in clips.values()) == raw["totals"]["frames"]
    assert [s.clips for s in manifest.shards] == [2, 2, 1]
    assert all(s.bytes == s.tar.stat().st_size for s in manifest.shards)
    reasons = {f.source: f.reason for f in manifest.failures}
    assert set(reasons) == set(BAD)
    for source, expected in BAD.items():
        assert expected in reasons[source]
    assert manifest.classes == ["A", "B"] and {c.meta["label"] for c in clips.values()} == {0, 1}
    assert all("." not in key for key in clips)


def test_clip_order_is_shuffled_with_the_seed(video_dir: Path, shards: Path, tmp_path: Path) -> None:
    keys = [c.key for s in sr.list_shards(shards) for c in sr.iter_clips(s.tar)]
    make_shards_tool.make_shards(video_dir, tmp_path / "s1", shard_size="2clips", seed=1, workers=1)
    other = [c.key for s in sr.list_shards(tmp_path / "s1") for c in sr.iter_clips(s.tar)]
    assert sorted(keys) == sorted(other) and keys != other


def test_resume_after_an_interrupted_run(video_dir: Path, shards: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tool = make_shards_tool
    from tools.sharding.writer import ShardSink
    real_add, calls = ShardSink.add, []

    def add_then_die(self, key, *args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(key)
        real_add(self, key, *args)

    out = tmp_path / "out"
    monkeypatch.setattr(ShardSink, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        tool.make_shards(video_dir, out, shard_size="2clips", workers=2)
    monkeypatch.setattr(ShardSink, "add", real_add)
    first = sr.read_manifest(out)
    assert not first.complete and len(first.shards) == 1            # the half-written 2nd shard was dropped
    assert not list(out.glob("*.tmp"))
    kept = first.shards[0].tar.stat().st_mtime_ns
    tool.make_shards(video_dir, out, shard_size="2clips", workers=2)
    resumed = sr.read_manifest(out)
    assert resumed.complete and resumed.shards[0].tar.stat().st_mtime_ns == kept
    keys = [c.key for s in resumed.shards for c in sr.iter_clips(s.tar)]
    assert sorted(keys) == sorted(_all_clips(shards)) and len(keys) == len(set(keys))
    assert len(resumed.failures) == len(BAD)


def test_resume_with_other_options_is_refused(video_dir: Path, shards: Path) -> None:
    r = subprocess.run([sys.executable, TOOL, str(video_dir), "--out", str(shards), "--shard-size", "2clips",
                        "--quality", "80"], capture_output=True, check=False, text=True)
    assert r.returncode == 2 and "quality 90 -> 80" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_parts_partition_the_input_exactly(video_dir: Path, shards: Path, tmp_path: Path) -> None:
    tool = make_shards_tool
    out = tmp_path / "parts"
    per_part = []
    for k in (1, 2, 3):
        m = tool.make_shards(video_dir, out, shard_size="1clips", part=(k, 3), workers=1)
        per_part.append({c.key for s in m.shards for c in sr.iter_clips(s.tar)} | {f.source for f in m.failures})
        assert (out / "manifest.json").exists() == (k == 3)           # the last part merges
    assert sum(len(p) for p in per_part) == len(set().union(*per_part)) == len(GOOD) + len(BAD)
    merged = sr.read_manifest(out)
    assert merged.complete and merged.clips == len(GOOD) and len(merged.failures) == len(BAD)
    assert len({s.tar.name for s in merged.shards}) == merged.clips


def test_options_fps_short_side_max_frames(video_dir: Path, tmp_path: Path) -> None:
    tool = make_shards_tool
    decode = decode_module
    opts = decode.DecodeOptions(fps=10, short_side=32, max_frames=9, min_frames=2)
    tool.make_shards(video_dir / "A", tmp_path, options=opts, workers=1)
    clips = _all_clips(tmp_path)
    assert len(clips) == 2
    for clip in clips.values():
        assert clip.n_frames <= 9 and clip.meta["fps"] == 10.0
        assert Image.open(io.BytesIO(clip.frame(0))).size == (42, 32) == (clip.meta["width"], clip.meta["height"])


def test_bad_arguments_exit_with_one_line(video_dir: Path, tmp_path: Path) -> None:
    missing = subprocess.run([sys.executable, TOOL, str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                             capture_output=True, check=False, text=True)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    unwritable = subprocess.run([sys.executable, TOOL, str(video_dir), "--out", str(tmp_path / "file" / "o")],
                                capture_output=True, check=False, text=True)
    assert unwritable.returncode == 2 and "output folder" in unwritable.stderr
    assert len(unwritable.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("source", ["empty_folder", "a_file.mp4", "only_text"])
def test_an_empty_or_missing_source_is_an_error_and_writes_nothing(tmp_path: Path, source: str) -> None:
    """The old make_shards wrote a complete 0-clip manifest, after which added videos were never sharded."""
    src = tmp_path / source
    if source == "a_file.mp4":
        src.write_bytes(b"\x00" * 100)
    else:
        src.mkdir()
        if source == "only_text":
            (src / "readme.txt").write_text("no videos here\n")
    r = subprocess.run([sys.executable, TOOL, str(src), "--out", str(tmp_path / "o")], capture_output=True,
                       check=False, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(src) in r.stderr
    assert not (tmp_path / "o").exists()


def test_videos_added_after_a_complete_run_are_sharded_by_a_rerun(video_dir: Path, tmp_path: Path) -> None:
    tool = make_shards_tool
    src = tmp_path / "src"
    (src / "A").mkdir(parents=True)
    (src / "A" / "one.avi").write_bytes((video_dir / "A" / "mpeg4.avi").read_bytes())
    assert tool.make_shards(src, tmp_path / "o", workers=1).clips == 1
    (src / "A" / "two.mp4").write_bytes((video_dir / "A" / "h264.mp4").read_bytes())
    again = tool.make_shards(src, tmp_path / "o", workers=1)
    assert again.complete and again.clips == 2 and len(again.shards) == 2


def test_synthetic_shards_fixture(synthetic_shards: Path, synthetic_root: Path) -> None:
    manifest = sr.read_manifest(synthetic_shards)
    assert manifest.complete and manifest.clips == 6 and not manifest.failures
    assert manifest.classes == [line.split()[1] for line in
                                (synthetic_root / "ucfTrainTestlist" / "classInd.txt").read_text().splitlines()]


def test_a_complete_folder_of_format_1_is_kept_an_incomplete_one_refused(video_dir: Path, shards: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "old"
    shutil.copytree(shards, out)
    raw = json.loads((out / "manifest.json").read_text())
    raw["format_version"] = 1
    del raw["options"]["strict"]                        # options version 1 did not have
    (out / "manifest.json").write_text(json.dumps(raw))
    argv = [sys.executable, TOOL, str(video_dir), "--out", str(out), "--shard-size", "2clips"]
    kept = subprocess.run(argv, capture_output=True, check=False, text=True)
    assert kept.returncode == 0 and "older make_shards" in kept.stderr
    assert json.loads((out / "manifest.json").read_text())["format_version"] == 1
    (out / "manifest.json").write_text(json.dumps(raw | {"complete": False}))
    refused = subprocess.run(argv, capture_output=True, check=False, text=True)
    assert refused.returncode == 2 and "format version 1" in refused.stderr
