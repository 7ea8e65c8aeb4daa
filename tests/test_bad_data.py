"""Only bad data counts as bad data: a frame damaged after its shard was written costs one pair in both
loaders (its CRC-32 no longer matches the frame table), while a DALI failure that is the machine's (CUDA,
out of memory) or that decoding the frames one by one does not pin on some of them is raised as it came,
and nothing enters the bad-frame ledger a checkpoint would keep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from coded_shards import write_coded_shards

import pipeline.dali_decode_check as ddc
import pipeline.dali_loader as dl
from pipeline.config import LoaderConfig, PairSamplingConfig
from pipeline.frame_index import ClipTable, FrameIndex
from pipeline.loader import build_pair_loader
from pipeline.sampling import PlanKey, plan_epoch

N_FRAMES = [40, 10, 60, 3, 50, 2, 45, 30, 25, 35, 20, 50]
H, W, S, B = 48, 64, 32, 4
SAMPLING = PairSamplingConfig(crop_size=S)


def config(root: Path, log: Path | None = None, **kw) -> LoaderConfig:
    base = {"shards": root, "batch_size": B, "dtype": "uint8", "debug_indices": True, "num_workers": 1,
            "sampling": SAMPLING, "bad_frame_limit": 0.5, "bad_frame_log": log}
    return LoaderConfig(**{**base, **kw})


def read_in_epoch_0() -> tuple[int, int, set[int]]:
    """A (clip, frame) some pair of epoch 0 reads, and the plan positions of the pairs that read it."""
    plan = plan_epoch(ClipTable(np.array(N_FRAMES), np.full(len(N_FRAMES), H), np.full(len(N_FRAMES), W)),
                      SAMPLING, PlanKey(0, 0))
    clip, frame = int(plan.clip[3]), int(plan.j[3])
    slots = {p for p in range(len(plan)) if int(plan.clip[p]) == clip and frame in (int(plan.i[p]), int(plan.j[p]))}
    return clip, frame, slots


@pytest.fixture(scope="module")
def damaged_later(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int, set[int]]:
    """Clean shards, then one byte in the middle of one frame's entropy-coded data changed in place, as a
    disk or a copy would: still a well-formed JPEG (no marker appears), so no byte check sees it, and
    DALI and Pillow decode it to wrong pixels without a word."""
    root = write_coded_shards(tmp_path_factory.mktemp("later"), N_FRAMES, clips_per_shard=5)
    clip, frame, slots = read_in_epoch_0()
    index = FrameIndex.open(root)
    start, length, _ = index.frame_entries(np.array([clip]), np.array([frame]))
    tar = index.tars[int(index.shard[clip])]
    data = bytearray(tar.read_bytes())
    jpeg = bytes(data[start[0]:start[0] + length[0]])
    sos = jpeg.index(b"\xff\xda")
    pos = int(start[0]) + (sos + len(jpeg)) // 2
    while data[pos] in (0xFF, 0xEF) or data[pos - 1] == 0xFF:
        pos += 1
    data[pos] ^= 0x10
    tar.write_bytes(bytes(data))
    return root, index.key(clip), frame, slots


@pytest.mark.parametrize("kind", ["dali", "wds"])
def test_a_frame_damaged_after_sharding_costs_one_pair(damaged_later, tmp_path: Path, kind: str) -> None:
    root, key, frame, slots = damaged_later
    log = tmp_path / "bad_frames.jsonl"
    loader = build_pair_loader(config(root, log, kind=kind))
    batches = list(loader)
    assert len(batches) == len(loader)                                  # the epoch completes
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["key"], r["frame"]) for r in rows] == [(key, frame)]
    assert "bytes changed since the shard was written" in rows[0]["error"]
    assert loader.bad_frames.replaced == slots                          # only the pairs that read it
    assert all((k, frame) not in ((key, i), (key, j)) for b in batches for k, i, j in b.index)


class FailingPipe:
    """Stands in for a built DALI pipeline whose run() raises `message` (the first `times` calls)."""

    exec_dynamic = True

    def __init__(self, real, message: str, times: int) -> None:
        self.real, self.message, self.left = real, message, times

    def run(self):
        if self.left:
            self.left -= 1
            raise RuntimeError(self.message)
        return self.real.run()


def failing_loader(root: Path, log: Path, monkeypatch: pytest.MonkeyPatch, message: str,
                   times: int = 1, frames_fail: str | None = None):
    """A DALI loader whose first batch fails with `message`; frames_fail: what each one-by-one decode
    then raises (None: they decode)."""
    real_build = dl.build_pipeline
    monkeypatch.setattr(dl, "build_pipeline", lambda *a, **k: FailingPipe(real_build(*a, **k), message, times))
    if frames_fail is not None:
        monkeypatch.setattr(ddc, "_build", lambda *a, **k: FailingPipe(None, frames_fail, 10 ** 6))
    return build_pair_loader(config(root, log))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("clean"), N_FRAMES, clips_per_shard=5)


@pytest.mark.parametrize("message,frames_fail", [
    ("Critical error in pipeline: Error when executing Mixed operator decoders__ImageSlice encountered: "
     + "CUDA error: out of memory", None),
    ("Error in thread 0: CUDA allocation failed", "Can't allocate 129499136 bytes on device 0."),
    ("NVJPEG error \"5\" : NVJPEG_STATUS_ALLOCATOR_FAILURE", None),
])
def test_a_cuda_or_memory_error_is_raised_and_the_ledger_stays_empty(
        clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str, frames_fail: str | None) -> None:
    log = tmp_path / "bad_frames.jsonl"
    loader = failing_loader(clean, log, monkeypatch, message, frames_fail=frames_fail)
    with pytest.raises(RuntimeError) as raised:
        list(loader)
    assert str(raised.value) in (message, frames_fail)
    assert loader.bad_frames.known == {} and loader.bad_frames.state_dict()["frames"] == []
    assert not log.exists()


def test_a_failure_that_every_frame_repeats_alone_is_no_evidence_of_bad_frames(
        clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder itself fails (whatever it says): marking the whole batch bad would hide it, and a resumed
    run would inherit those frames from the checkpoint."""
    log = tmp_path / "bad_frames.jsonl"
    loader = failing_loader(clean, log, monkeypatch, "decoder failure", frames_fail="decoder failure")
    with pytest.raises(RuntimeError, match="decoder failure"):
        list(loader)
    assert loader.bad_frames.known == {} and not log.exists()


def test_a_failure_the_frames_do_not_reproduce_is_raised(clean: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "bad_frames.jsonl"
    loader = failing_loader(clean, log, monkeypatch, "a glitch of the pipeline")
    with pytest.raises(RuntimeError, match="a glitch of the pipeline"):
        list(loader)
    assert loader.bad_frames.known == {} and not log.exists() and loader.pipeline_builds == 1
