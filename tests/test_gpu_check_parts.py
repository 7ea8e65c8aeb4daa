"""The GPU check's parts: its shards (made with numpy and Pillow alone), its DAVIS timing, and its summary,
which pairs every sweep point with its ceiling and reader, hands the fastest setting on, and judges the
H100 targets."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from benchmarks import davis_timing
from benchmarks.gpu_data import ShardSetConfig, make_shard_set
from benchmarks.gpu_summary import best_loader_options, summarise, summary_markdown
from pipeline.frame_index import FrameIndex


def test_the_shards_are_make_shards_jpegs_the_loader_can_index(tmp_path: Path) -> None:
    cfg = ShardSetConfig(clips=6, frames=8, width=64, height=48, scenes=2, clips_per_shard=4)
    manifest = make_shard_set(tmp_path, cfg, workers=1)
    assert (manifest.clips, manifest.frames, len(manifest.shards)) == (6, 48, 2)
    index = FrameIndex.open(tmp_path)
    assert len(index) == 6 and int(index.n_frames.sum()) == 48
    with tarfile.open(tmp_path / "gpucheck-000000.tar") as tar:
        frames = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".frames")}
    assert frames["clip000000.frames"] == frames["clip000002.frames"] != frames["clip000001.frames"]
    first = frames["clip000000.frames"]
    image = Image.open(io.BytesIO(first[:first.index(b"\xff\xd9") + 2]))
    assert image.size == (64, 48) and image.format == "JPEG" and not image.info.get("progressive")
    assert image.layer[0][1:3] == (2, 2)                       # 4:2:0, as make_shards writes


def test_the_davis_timing_tells_propagation_from_scoring(synthetic_davis: Path, tmp_path: Path) -> None:
    out = tmp_path / "timing.json"
    result = CliRunner().invoke(davis_timing.main, [
        "--davis-root", str(synthetic_davis), "--out", str(tmp_path / "results"), "--model", "vit_micro_patch16",
        "--device", "cpu", "--size", "32x48", "--json", str(out)])
    assert result.exit_code == 0, result.output
    t = json.loads(out.read_text())
    frames = sum(len(list(p.glob("*.jpg"))) for p in (synthetic_davis / "JPEGImages" / "480p").iterdir())
    assert t["frames"] == frames and t["sequences"] == 2 and t["settings"]["protocol"] == "cropmae"
    s = t["seconds"]
    assert s["propagate"] == pytest.approx(s["propagate_and_score"] - s["score_alone"]) and s["score_alone"] > 0
    assert 0 <= t["J&F-Mean"] <= 1 and len(list((tmp_path / "results").rglob("*.png"))) == frames


def bench_result(path: Path, p: int, t: int, hw: float, rows: dict[str, float]) -> None:
    path.write_text(json.dumps({"config": {"workers": t, "decoder": {"py_num_workers": p, "hw_decoder_load": hw}},
                                "loaders": {k: {"pairs_per_s": v} for k, v in rows.items()}, "skipped": {}}))


def train_result(path: Path, batch: int, step_s: float, mfu: float, overhead: float | None) -> None:
    r = {"batch_size": batch, "model": {"name": "vit_small_patch16", "input_size": 224}, "amp_bf16": True,
         "tensors_on_device": {"step_s": step_s, "pairs_per_s": batch / step_s, "warmup_s": 1.0}, "mfu": mfu}
    if overhead is not None:
        r["with_loader"] = {"threads": 14, "hw_decoder_load": 0.65, "py_num_workers": 1,
                            "step_s": step_s * (1 + overhead), "overhead": overhead, "data_wait_frac": 0.01}
    path.write_text(json.dumps(r))


def fake_gpu_results(root: Path) -> Path:
    sweep, eager, compiled = (root / d for d in ("loader-sweep", "train-eager", "train-compile"))
    for d in (root, sweep, eager, compiled, root / "davis"):
        d.mkdir(exist_ok=True)
    (root / "env.json").write_text(json.dumps({
        "date": "2026-01-01T00:00:00+00:00", "command": "benchmarks/gpu_check.sh --budget 420", "cuda_available": True,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "driver": "580.1"}], "versions": {"torch": "2.11.0"},
        "gpu_rates": {"bf16_matmul_tflops": 790.0, "copy_gb_per_s": 3000.0}}))
    (root / "steps.json").write_text(json.dumps({"budget_s": 420, "elapsed_s": 400, "steps": [
        {"name": "env", "status": "ok", "seconds": 4.0, "cap_s": 30, "reason": ""}]}))
    bench_result(sweep / "loader-p1-t4-hw0.65.json", 1, 4, 0.65, {"dali_gpu": 9000, "ceiling_gpu": 18000, "source": 11000})
    bench_result(sweep / "loader-p2-t4-hw0.65.json", 2, 4, 0.65, {"dali_gpu": 18000, "ceiling_gpu": 20000, "source": 21000})
    bench_result(sweep / "loader-p2-t8-hw0.65.json", 2, 8, 0.65, {"dali_gpu": 24000})
    (sweep / "loader-p1-t8-hw0.65.json").write_text('{"config": {"wor')            # damaged
    (sweep / "loader-p4-t4-hw0.65.started").write_text("1")                        # stalled
    train_result(eager / "train-eager-b256.json", 256, 0.080, 0.30, 0.05)
    train_result(compiled / "train-compile-b256.json", 256, 0.050, 0.48, 0.01)
    (root / "davis" / "davis.json").write_text(json.dumps({
        "sequences": 30, "frames": 1999, "model": "vit_small_patch16", "settings": {"protocol": "cropmae"},
        "frames_per_s": 80.0, "seconds": {"propagate": 25.0, "score_alone": 10.0, "propagate_and_score": 35.0}}))
    return root


def test_the_summary_pairs_points_with_ceiling_and_reader_and_judges_the_targets(tmp_path: Path) -> None:
    s = summarise(fake_gpu_results(tmp_path))
    points = {(p["py_workers"], p["threads"]): p for p in s["loader_sweep"]}
    assert set(points) == {(1, 4), (2, 4), (2, 8)}
    assert points[2, 4]["ceiling_pairs_per_s"] == 20000 and points[2, 4]["efficiency"] == pytest.approx(0.9)
    assert points[1, 4]["ceiling_pairs_per_s"] == 18000 and points[1, 4]["efficiency"] == pytest.approx(0.5)
    assert points[2, 8]["reader_pairs_per_s"] == 21000 and points[2, 8]["ceiling_pairs_per_s"] is None
    assert s["unfinished_items"] == {"loader-p1-t8-hw0.65": "unreadable", "loader-p4-t4-hw0.65": "stalled"}
    f = s["figures"]
    assert f["loader_pairs_per_s"] == 24000 and f["loader_vs_training_demand"] == pytest.approx(24000 / 5120)
    assert f["loader_overhead"] == 0.01 and f["loader_overhead_from"] == "compile, batch 256"
    assert f["mfu"] == 0.48 and f["davis_seconds"] == 35.0
    assert [t["met"] for t in s["targets"]] == [True, True, True, True, True]
    text = summary_markdown(s)
    assert "NVIDIA H100 80GB HBM3, driver 580.1" in text and "| 2 | 8 | 0.65 | 24,000 |" in text
    assert "bf16 matrix product 790 TFLOP/s" in text and "propagation 25.0 s" in text


def test_the_compiled_step_is_fed_at_the_sweeps_fastest_setting(tmp_path: Path) -> None:
    fake_gpu_results(tmp_path)
    assert best_loader_options(tmp_path, "cuda") == ("--threads", "8", "--hw-decoder-load", "0.65",
                                                     "--py-num-workers", "2")
    assert best_loader_options(tmp_path / "nothing", "cuda") == ()


def test_a_cpu_summary_has_no_h100_targets(tmp_path: Path) -> None:
    (tmp_path / "env.json").write_text(json.dumps({"date": "d", "cuda_available": False, "gpus": [], "versions": {},
                                                   "cpu_cores": 2, "cpu": "x86"}))
    s = summarise(tmp_path)
    assert "targets" not in s and s["machine"].startswith("cpu: 2 cores") and s["loader_sweep"] == []
    assert "## Steps" in summary_markdown(s)
