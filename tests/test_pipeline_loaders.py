"""Both loaders on tiny coded shards: red = x, green = y, blue = 4 * frame index (tests/coded_shards.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from coded_shards import BLUE_PER_FRAME, write_coded_shards

from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
from pipeline.loader import build_pair_loader
from pipeline.sampling import PlanKey, plan_epoch
from siammae_common.constants import IMAGENET_MEAN, IMAGENET_STD

N_FRAMES = [40, 10, 60, 3, 50, 2, 45, 30]
KINDS = ["dali", "wds"]
S = 32


@pytest.fixture(scope="module")
def coded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("coded"), N_FRAMES, clips_per_shard=3)


def config(root: Path, **kw) -> LoaderConfig:
    base = {"shards": root, "batch_size": 4, "dtype": "uint8", "debug_indices": True, "num_workers": 0,
                "sampling": PairSamplingConfig(crop_size=S)}
    base.update(kw)
    return LoaderConfig(**base)


def epoch_pairs(loader, epoch: int = 0) -> tuple[list, list]:
    loader.set_epoch(epoch)
    batches = list(loader)
    return batches, [p for b in batches for p in b.index]


@pytest.mark.parametrize("kind", KINDS)
def test_both_frames_get_the_same_crop_and_flip(coded: Path, kind: str) -> None:
    loader = build_pair_loader(config(coded, kind=kind))
    batches, _ = epoch_pairs(loader)
    flips = set()
    for b in batches:
        f1, f2 = b.f1.int(), b.f2.int()
        # same window and flip: red (x) and green (y) agree pixel for pixel, up to JPEG/resize error
        assert (f1[:, :2] - f2[:, :2]).abs().float().mean() < 2.0
        for n, (_, i, j) in enumerate(b.index):
            assert abs(f1[n, 2].float().mean().item() - BLUE_PER_FRAME * i) < 3   # f1 is frame i
            assert abs(f2[n, 2].float().mean().item() - BLUE_PER_FRAME * j) < 3   # f2 is frame j
            dx1 = (f1[n, 0, :, -1] - f1[n, 0, :, 0]).float().mean().item()
            dx2 = (f2[n, 0, :, -1] - f2[n, 0, :, 0]).float().mean().item()
            assert abs(dx1) > 20 and np.sign(dx1) == np.sign(dx2)                # same flip
            flips.add(dx1 < 0)
    assert flips == {True, False}


def test_dali_crop_window_matches_the_plan(coded: Path) -> None:
    cfg = config(coded)
    loader = build_pair_loader(cfg)
    batches, _ = epoch_pairs(loader)
    ix = loader.index
    plan = plan_epoch(ix.clips, cfg.sampling, PlanKey(cfg.seed, 0))
    f1 = torch.cat([b.f1 for b in batches])[:len(plan)].float()
    for p in range(len(plan)):
        y, x, h, w = plan.crop[p]
        red = f1[p, 0].mean().item() / 255 * (64 - 1)      # mean x of the window, in pixels
        green = f1[p, 1].mean().item() / 255 * (48 - 1)
        assert abs(red - (x + (w - 1) / 2)) < 1.5 and abs(green - (y + (h - 1) / 2)) < 1.5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_shapes_dtypes_and_normalisation(coded: Path, kind: str, dtype: str) -> None:
    raw = next(iter(build_pair_loader(config(coded, kind=kind))))
    out = next(iter(build_pair_loader(config(coded, kind=kind, dtype=dtype, debug_indices=False))))
    assert out.index is None
    for x, r in ((out.f1, raw.f1), (out.f2, raw.f2)):
        assert x.shape == (4, 3, S, S) and x.dtype == getattr(torch, dtype) and x.device.type == "cpu"
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        back = (x.float() * std + mean) * 255
        assert (back - r.float()).abs().max() < 2.5      # fp16/bf16 rounding included


@pytest.mark.parametrize("kind", KINDS)
def test_k_pairs_per_clip(coded: Path, kind: str) -> None:
    loader = build_pair_loader(config(coded, kind=kind, sampling=PairSamplingConfig(crop_size=S,
                                                                                    pairs_per_clip=3),
                                      batch_size=6))
    _, pairs = epoch_pairs(loader)
    assert len(loader) == 4 and len(pairs) == 24
    assert set(Counter(k for k, _, _ in pairs).values()) == {3}
    assert len({k for k, _, _ in pairs}) == len(N_FRAMES)


@pytest.mark.parametrize("kind", KINDS)
def test_ranks_see_disjoint_clips(coded: Path, kind: str) -> None:
    seen = []
    for rank in range(2):
        loader = build_pair_loader(config(coded, kind=kind, rank=rank, world_size=2, batch_size=2))
        _, pairs = epoch_pairs(loader, epoch=1)
        seen.append({k for k, _, _ in pairs})
        assert len(loader) == 4                           # 4 clips x 2 pairs / 2 per batch
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == len(N_FRAMES)


def test_loader_is_deterministic_and_reshuffles_per_epoch(coded: Path) -> None:
    a = build_pair_loader(config(coded))
    b = build_pair_loader(config(coded))
    assert epoch_pairs(a, 0)[1] == epoch_pairs(b, 0)[1]
    assert epoch_pairs(a, 1)[1] == epoch_pairs(b, 1)[1]    # a continued, b jumped: same pairs
    assert epoch_pairs(a, 0)[1] != epoch_pairs(a, 1)[1]


def test_dali_parallel_source_gives_the_same_batches(coded: Path) -> None:
    runs = []
    for parallel in (False, True):
        loader = build_pair_loader(config(coded, decoder=DecoderConfig(parallel_source=parallel)))
        runs.append(epoch_pairs(loader, 2)[0])
    for a, b in zip(*runs):
        assert a.index == b.index and torch.equal(a.f1, b.f1) and torch.equal(a.f2, b.f2)


def test_fallback_and_dali_give_the_same_gap_distribution(coded: Path) -> None:
    gaps = {}
    for kind in KINDS:
        loader = build_pair_loader(config(coded, kind=kind, batch_size=8,
                                          sampling=PairSamplingConfig(crop_size=16, pairs_per_clip=8)))
        gaps[kind] = np.array([j - i for e in range(3) for _, i, j in epoch_pairs(loader, e)[1]])
    # Both loaders draw from the same plan, so the histograms agree; the tolerance leaves room for a
    # future change of either loader's stream order without ever flaking on a fixed seed.
    bins = np.arange(0, 50)
    h_dali = np.histogram(gaps["dali"], bins)[0] / len(gaps["dali"])
    h_wds = np.histogram(gaps["wds"], bins)[0] / len(gaps["wds"])
    assert np.abs(np.cumsum(h_dali) - np.cumsum(h_wds)).max() < 0.05
    assert abs(gaps["dali"].mean() - gaps["wds"].mean()) < 1.0


TRUNCATED_SCRIPT = """
import sys
from pathlib import Path
from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
from pipeline.loader import build_pair_loader
cfg = LoaderConfig(shards=Path(sys.argv[1]), batch_size=4, kind=sys.argv[2], num_workers=1,
                   sampling=PairSamplingConfig(crop_size=16))
for batch in build_pair_loader(cfg):
    pass
"""


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_shard_gives_a_clear_error_not_a_hang(coded: Path, tmp_path: Path, kind: str) -> None:
    root = tmp_path / "shards"
    shutil.copytree(coded, root)
    tar = sorted(root.glob("*.tar"))[1]
    data = tar.read_bytes()
    tar.write_bytes(data[:len(data) // 2])
    done = subprocess.run([sys.executable, "-c", TRUNCATED_SCRIPT, str(root), kind], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert tar.name in last and "truncated" in last.lower()


@pytest.mark.parametrize("parallel", [False, True])
def test_dali_reports_a_shard_truncated_after_start(coded: Path, tmp_path: Path, parallel: bool) -> None:
    root = tmp_path / "shards"
    shutil.copytree(coded, root)
    loader = build_pair_loader(config(root, batch_size=2, decoder=DecoderConfig(parallel_source=parallel)))
    for tar in root.glob("*.tar"):
        tar.write_bytes(tar.read_bytes()[:1024])
    with pytest.raises(Exception, match="truncated"):
        list(loader)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_dali_gpu_mode_matches_the_cpu_contract(coded: Path) -> None:
    loader = build_pair_loader(config(coded, device="cuda", dtype="bfloat16"))
    batch = next(iter(loader))
    assert batch.f1.device.type == "cuda" and batch.f1.dtype == torch.bfloat16
    assert batch.f1.shape == (4, 3, S, S)
    assert (batch.f1[:, :2].float() - batch.f2[:, :2].float()).abs().mean() < 0.1


@pytest.mark.parametrize("kind", KINDS)
def test_loaders_read_make_shards_output(synthetic_shards: Path, kind: str) -> None:
    cfg = LoaderConfig(shards=synthetic_shards, batch_size=4, kind=kind, num_workers=1, debug_indices=True,
                       sampling=PairSamplingConfig(crop_size=32))
    loader = build_pair_loader(cfg)
    batches = list(loader)
    assert len(batches) == len(loader) >= 1
    assert batches[0].f1.shape == (4, 3, 32, 32) and batches[0].f1.dtype == torch.float32
    assert all(i >= 0 and 4 <= j - i <= 48 for b in batches for _, i, j in b.index)   # clips have >= 24 frames
