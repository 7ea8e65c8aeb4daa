"""siammae-bench end to end on tiny coded shards and videos made from them: the JSON has its keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from coded_shards import coded_frame, write_coded_shards

N_FRAMES = [30, 20, 25]


def write_videos(root: Path) -> None:
    """One small mpeg4 .avi per coded clip, named after the clip key (the bench finds it by name)."""
    root.mkdir(parents=True)
    for c, n in enumerate(N_FRAMES):
        with av.open(str(root / f"clip{c:04d}.avi"), "w") as out:
            stream = out.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for t in range(n):
                frame = av.VideoFrame.from_ndarray(coded_frame(t, 48, 64), format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode())


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bench")
    shards = write_coded_shards(root / "shards", N_FRAMES, clips_per_shard=2)
    videos = root / "videos"
    write_videos(videos)
    return shards, videos


def test_bench_writes_json_table_and_plot(bench_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    shards, videos = bench_inputs
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--shards", str(shards), "--videos", str(videos),
         "--json", str(out), "--plot", str(png), "--batch-size", "4", "--workers", "1", "--crop-size", "32",
         "--seconds", "0.3", "--rounds", "2",
         "--only", "naive,jpeg_folders,wds,dali_cpu,dali_cpu_reader,ceiling,dali_gpu,source"],
        capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"device", "loaders", "skipped", "own_jpeg_bytes_per_pair"} <= set(report)
    expected = {"naive", "jpeg_folders", "wds", "dali_cpu", "dali_cpu_reader", "ceiling"}
    assert expected <= set(report["loaders"])
    assert report["config"]["rounds"] == 2
    for name in expected:
        row = report["loaders"][name]
        assert {"pairs_per_s", "bytes_per_pair", "efficiency", "vs_naive", "vs_folders"} <= set(row)
        assert row["pairs_per_s_min"] <= row["pairs_per_s"] <= row["pairs_per_s_max"]
        assert len(row["pairs_per_s_rounds"]) == 2
        assert row["pairs_per_s"] > 0 and row["vs_folders"] > 0
        has_ceiling = name in ("dali_cpu", "ceiling")                   # only against its own ceiling
        assert (row["efficiency"] is not None) == has_ceiling and (not has_ceiling or row["efficiency"] > 0)
    assert report["loaders"]["naive"]["vs_naive_rounds"] == [1.0, 1.0]
    assert report["loaders"]["dali_cpu"]["bytes_vs_own_jpeg"] == pytest.approx(1.0, abs=0.3)
    assert "dali_gpu" in report["loaders"] or "dali_gpu" in report["skipped"]
    source = report["loaders"]["source"]                    # the byte reader alone: no decode, no ceiling
    assert source["pairs_per_s"] > 0 and source["efficiency"] is None
    assert source["bytes_vs_own_jpeg"] == pytest.approx(1.0, abs=0.3)
    assert "pairs/s" in done.stdout and "dali_cpu" in done.stdout and "x folders" in done.stdout
    assert png.stat().st_size > 1000
    assert np.isfinite(report["loaders"]["naive"]["bytes_per_pair"])


def test_a_batch_larger_than_an_epoch_is_one_line_before_any_row_runs(bench_inputs: tuple[Path, Path]) -> None:
    shards, _ = bench_inputs
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--shards", str(shards), "--only", "source",
                           "--batch-size", "64", "--rounds", "1"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "round 1/1" not in done.stderr
    assert f"{shards}: --batch-size 64 is larger than one epoch of pairs (6 per process" in done.stderr
