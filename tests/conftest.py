"""Shared fixtures: a tiny synthetic video set and its shards (made once per session), and the gpu marker.

The video tools (ffmpeg, PyAV) are imported inside the fixtures that need them, so that the `gpu`-marked
tests also run on a GPU machine that has neither (the GPU check runs them there).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import tools.make_synthetic as make_synthetic_tool

REPO = Path(__file__).resolve().parents[1]


def tiny_synthetic_config():
    """A few seconds of work: 3 classes x 2 clips at 64x48, and small DAVIS / JHMDB / VIP sets."""
    return make_synthetic_tool.SyntheticConfig(
        seed=0, ucf_classes=3, ucf_clips_per_class=2, ucf_size=(64, 48), ucf_frames=(24, 40),
        davis_sequences=2, davis_size=(96, 64), davis_frames=(10, 14),
        jhmdb_actions=2, jhmdb_videos_per_action=1, jhmdb_size=(96, 64), jhmdb_frames=(10, 14),
        vip_videos=2, vip_size=(96, 64), vip_frames=(8, 10))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic set: UCF-101/ + ucfTrainTestlist/, DAVIS/, JHMDB/ and VIP/ (see make_synthetic.py)."""
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_tool.make_synthetic(root, tiny_synthetic_config(), workers=2)
    return root


@pytest.fixture(scope="session")
def synthetic_davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DAVIS set of the tiny synthetic set alone (the same files as synthetic_root / "DAVIS"), made
    without ffmpeg: the folder holding JPEGImages/, Annotations/, ImageSets/."""
    root = tmp_path_factory.mktemp("synthetic_davis")
    make_synthetic_tool.make_synthetic(root, replace(tiny_synthetic_config(), sets=("davis",)), workers=2)
    return root / "DAVIS"


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos in several codecs and containers plus bad inputs (video_corpus.GOOD / BAD)."""
    from video_corpus import write_mixed_videos

    return write_mixed_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def shards(video_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_shards' output for video_dir: 2 clips per shard."""
    import tools.make_shards as make_shards_tool

    out = tmp_path_factory.mktemp("shards")
    make_shards_tool.make_shards(video_dir, out, shard_size="2clips", workers=2)
    return out


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of the synthetic UCF set: a folder with shards-00000N.tar/.idx (2 clips each) + manifest.json."""
    import tools.make_shards as make_shards_tool

    out = tmp_path_factory.mktemp("shards")
    make_shards_tool.make_shards(synthetic_root, out, shard_size="2clips", workers=2)
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked @pytest.mark.gpu skip cleanly on machines without CUDA."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)
