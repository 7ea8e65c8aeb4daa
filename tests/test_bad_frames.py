"""Damaged frames in the shards: both loaders skip them, name them, count them, and pick the same
replacement pairs, deterministically; the DALI pipeline restarts only when its decoder fails."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from coded_shards import DAMAGE_KINDS, damage_in_plan, write_coded_shards

from pipeline.bad_frames import TooManyBadFrames
from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
from pipeline.frame_index import ClipTable
from pipeline.loader import build_pair_loader
from pipeline.sampling import PlanKey, plan_epoch

N_FRAMES = [40, 10, 60, 3, 50, 2, 45, 30, 25, 35, 20, 50]
H, W, S, B = 48, 64, 32, 4
SAMPLING = PairSamplingConfig(crop_size=S)


DAMAGE = damage_in_plan(N_FRAMES, SAMPLING, height=H, width=W)
KEYS_BAD = {(f"clip{c:04d}", f) for c, f in DAMAGE}
assert sorted(DAMAGE.values()) == sorted(DAMAGE_KINDS)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("damaged"), N_FRAMES, clips_per_shard=5, damage=DAMAGE)


def config(root: Path, log: Path | None = None, **kw) -> LoaderConfig:
    base = {"shards": root, "batch_size": B, "dtype": "uint8", "debug_indices": True, "num_workers": 1,
            "sampling": SAMPLING, "bad_frame_limit": 0.5, "bad_frame_log": log}
    base.update(kw)
    return LoaderConfig(**base)


def logged(log: Path) -> set[tuple[str, int]]:
    return {(row["key"], row["frame"]) for row in map(json.loads, log.read_text().splitlines())}


def slots_reading_damage(epoch: int) -> set[int]:
    clips = ClipTable(np.array(N_FRAMES), np.full(len(N_FRAMES), H), np.full(len(N_FRAMES), W))
    plan = plan_epoch(clips, SAMPLING, PlanKey(0, epoch))
    return {p for p in range(len(plan)) if (int(plan.clip[p]), int(plan.i[p])) in DAMAGE
            or (int(plan.clip[p]), int(plan.j[p])) in DAMAGE}


def epoch_pairs(loader, epoch: int) -> tuple[list, list]:
    loader.set_epoch(epoch)
    batches = list(loader)
    return batches, [p for b in batches for p in b.index]


@pytest.mark.parametrize("kind,parallel", [("dali", False), ("dali", True), ("wds", None)])
def test_a_loader_skips_names_and_counts_each_damaged_frame(
        damaged: Path, tmp_path: Path, kind: str, parallel: bool | None, capsys: pytest.CaptureFixture) -> None:
    log = tmp_path / "bad_frames.jsonl"
    loader = build_pair_loader(config(damaged, log, kind=kind, decoder=DecoderConfig(parallel_source=parallel)))
    batches, pairs = epoch_pairs(loader, 0)
    assert len(batches) == len(loader)                                   # the epoch completes
    assert logged(log) == KEYS_BAD                                       # exactly the damaged frames
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(r["shard"].endswith(".tar") and r["error"] for r in rows)
    assert not {(k, i) for k, i, _ in pairs} & KEYS_BAD and not {(k, j) for k, _, j in pairs} & KEYS_BAD
    assert loader.bad_frames.replaced == slots_reading_damage(0)         # counted per replaced pair
    err = capsys.readouterr().err
    assert all(f"clip {k} frame {f}" in err for k, f in KEYS_BAD)       # and in the progress output


def test_both_loaders_deliver_the_same_pairs_in_place_of_the_damaged_ones(damaged: Path, tmp_path: Path) -> None:
    delivered = {}
    for kind in ("dali", "wds"):
        loader = build_pair_loader(config(damaged, kind=kind))
        delivered[kind] = [Counter(epoch_pairs(loader, e)[1]) for e in (0, 1)]
    assert delivered["dali"] == delivered["wds"]


def test_dali_restarts_its_pipeline_only_for_decoder_failures(damaged: Path, tmp_path: Path) -> None:
    """The decoder-only damage (huffman_table) fails a DALI batch: found, recorded, one restart there.
    A loader that already knows the bad frames (a resumed run) delivers the very same tensors, unrestarted."""
    first = build_pair_loader(config(damaged))
    runs = [[(b.index, b.f1, b.f2) for e in (0, 1) for b in epoch_pairs(first, e)[0]]]
    assert first.pipeline_builds == 2
    assert any("DALI decoder" in b.error for b in first.bad_frames.known.values())
    second = build_pair_loader(config(damaged))
    second.bad_frames.load_state_dict(first.bad_frames.state_dict())
    runs.append([(b.index, b.f1, b.f2) for e in (0, 1) for b in epoch_pairs(second, e)[0]])
    assert second.pipeline_builds == 1
    for (ia, a1, a2), (ib, b1, b2) in zip(*runs, strict=True):
        assert ia == ib and torch.equal(a1, b1) and torch.equal(a2, b2)


def test_without_damage_the_dali_pipeline_is_built_once_for_all_epochs(tmp_path: Path) -> None:
    root = write_coded_shards(tmp_path / "clean", N_FRAMES, clips_per_shard=5)
    loader = build_pair_loader(config(root, tmp_path / "log.jsonl"))
    for epoch in range(3):
        epoch_pairs(loader, epoch)
    assert loader.pipeline_builds == 1 and not (tmp_path / "log.jsonl").exists()


@pytest.mark.parametrize("kind", ["dali", "wds"])
def test_broadly_damaged_data_stops_the_loader_with_a_clear_message(damaged: Path, kind: str) -> None:
    loader = build_pair_loader(config(damaged, kind=kind, bad_frame_limit=0.001))
    with pytest.raises(TooManyBadFrames, match=r"\d of the 24 pairs of epoch 0 .* --bad-frame-limit 0.001 allows \(0\)"):
        epoch_pairs(loader, 0)


def test_the_ledger_round_trips_through_plain_containers(damaged: Path) -> None:
    loader = build_pair_loader(config(damaged, kind="wds"))
    epoch_pairs(loader, 0)
    state = loader.bad_frames.state_dict()
    assert json.loads(json.dumps(state)) == state                       # nothing but lists, str, int
    assert {(k, f) for k, f, _, _ in state["frames"]} == KEYS_BAD
    assert set(state["replaced"]) == slots_reading_damage(0) and state["epoch"] == 0


def test_the_byte_check_passes_good_frames_and_names_each_damage() -> None:
    import io

    from coded_shards import coded_frame, damage_jpeg, jpeg
    from PIL import Image

    from pipeline.jpeg_check import jpeg_problem

    good = jpeg(coded_frame(5, H, W))
    buf = io.BytesIO()
    Image.fromarray(coded_frame(5, H, W)).save(buf, "JPEG", quality=75, progressive=True)
    for ok in (good, buf.getvalue(), good + bytes(7)):          # baseline, progressive, zero padding after EOI
        assert jpeg_problem(ok, H, W) is None
    assert "start-of-image" in jpeg_problem(damage_jpeg(good, "header_zeroed"), H, W)
    assert "end-of-image" in jpeg_problem(damage_jpeg(good, "truncated"), H, W)
    assert "marker FF5A inside the entropy-coded data" in jpeg_problem(damage_jpeg(good, "bytes_flipped"), H, W)
    assert jpeg_problem(damage_jpeg(good, "huffman_table"), H, W) is None      # left to the decoders
    assert "the clip's frames are 32x48" in jpeg_problem(good, 48, 32)
    assert "too short" in jpeg_problem(good[:40], H, W)


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_byte_check_plus_either_decoder_reject_the_same_frames(kind: str) -> None:
    """Pillow alone rejects 'bytes_flipped' that DALI decodes with a warning; DALI's crop decode misses a
    truncation below the crop. With the shared byte check in front, both loaders reject every kind."""
    import io

    from coded_shards import coded_frame, damage_jpeg, jpeg
    from PIL import Image

    from pipeline.dali_decode_check import decoder_failures
    from pipeline.dali_graph import GraphSpec
    from pipeline.jpeg_check import jpeg_problem

    frame = damage_jpeg(jpeg(coded_frame(3, H, W)), kind)
    try:
        Image.open(io.BytesIO(frame)).convert("RGB")
        pillow = False
    except Exception:  # noqa: BLE001
        pillow = True
    top_crop = np.array([[0, 0]], np.int32), np.array([[W // 2, H // 4]], np.int32)
    dali = bool(decoder_failures([frame], *top_crop, GraphSpec(SAMPLING, DecoderConfig()), None))
    checked = jpeg_problem(frame, H, W) is not None
    assert checked or pillow and dali
    assert (checked or pillow) == (checked or dali)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_decoder_path_skips_the_same_frames_and_delivers_the_same_pairs(damaged: Path, tmp_path: Path) -> None:
    log = tmp_path / "bad_frames.jsonl"
    gpu = build_pair_loader(config(damaged, log, device="cuda"))
    _, pairs_gpu = epoch_pairs(gpu, 0)
    _, pairs_cpu = epoch_pairs(build_pair_loader(config(damaged)), 0)
    assert logged(log) == KEYS_BAD and pairs_gpu == pairs_cpu
