"""Shards of format version 1 (no `<key>.pts` member, written before frame times existed) still load:
the readers, DALI's tar index, and, once `make_shards.py --reindex` has written their frame tables, the
frame index both loaders use and both loaders themselves."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from coded_shards import coded_frame, jpeg

from pipeline import shard_format as sf
from pipeline import shard_reader as sr
from pipeline.config import LoaderConfig, PairSamplingConfig
from pipeline.frame_index import FrameIndex, FrameReader
from pipeline.loader import build_pair_loader
from tools.sharding import format_writer as fw
from tools.sharding.reindex import reindex

N_FRAMES = [12, 20, 9]


def write_v1_folder(root: Path) -> Path:
    """A shard folder exactly as the version-1 writer made it: three members per clip, a v1 manifest."""
    root.mkdir(parents=True)
    tar_path = root / "old-000000.tar"
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for c, n in enumerate(N_FRAMES):
            frames = [jpeg(coded_frame(t, 48, 64)) for t in range(n)]
            blob, offsets = fw.join_frames(frames)
            meta = {"class_name": "a", "label": 0, "source": f"a/clip{c}.avi", "fps": 25.0, "height": 48,
                    "width": 64, "key": f"clip{c}", "n_frames": n}
            for ext, data in (("frames", blob), ("offsets", fw.encode_offsets(offsets)),
                              ("json", json.dumps(meta, sort_keys=True).encode())):
                info = tarfile.TarInfo(f"clip{c}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    fw.write_dali_index(tar_path)
    manifest = {"format": sf.FORMAT_NAME, "format_version": 1, "name": "old", "complete": True,
                "options": {}, "classes": ["a"],
                "totals": {"shards": 1, "clips": len(N_FRAMES), "frames": sum(N_FRAMES),
                           "bytes": tar_path.stat().st_size, "failures": 0},
                "shards": [{"tar": tar_path.name, "index": "old-000000.idx", "clips": len(N_FRAMES),
                            "frames": sum(N_FRAMES), "bytes": tar_path.stat().st_size}],
                "failures": []}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_v1_folder(tmp_path_factory.mktemp("v1") / "shards")
    reindex(root, workers=1)
    return root


def test_version_1_reads_without_timestamps(v1: Path) -> None:
    manifest = sr.read_manifest(v1)
    assert manifest.format_version == 1 and manifest.clips == 3 and not manifest.warnings
    clips = list(sr.iter_clips(manifest.shards[0].tar))
    assert [c.n_frames for c in clips] == N_FRAMES and all(c.pts is None for c in clips)
    assert sr.read_index_keys(manifest.shards[0].index) == ["clip0", "clip1", "clip2"]


def test_frame_index_reads_version_1(v1: Path) -> None:
    index = FrameIndex.open(v1)
    assert list(index.n_frames) == N_FRAMES
    reader = FrameReader(index)
    (frame,) = reader.read(np.array([1]), np.array([5]))
    assert frame.tobytes() == next(c for c in sr.iter_clips(index.tars[0]) if c.key == "clip1").frame(5)
    reader.close()


@pytest.mark.parametrize("kind", ["dali", "wds"])
def test_both_loaders_read_version_1(v1: Path, kind: str) -> None:
    if kind == "dali":
        pytest.importorskip("nvidia.dali")
    cfg = LoaderConfig(shards=v1, batch_size=2, kind=kind, dtype="uint8", num_workers=0,
                       sampling=PairSamplingConfig(crop_size=32, gap_min=2, gap_max=6))
    batches = list(build_pair_loader(cfg))
    assert batches and batches[0].f1.shape == (2, 3, 32, 32)
