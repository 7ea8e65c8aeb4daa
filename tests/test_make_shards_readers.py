"""Every reader sees the shards make_shards writes: plain tarfile, webdataset, DALI's reader with the
written index, and the frame table random access uses."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import shard_reader as sr
from tools.sharding import format_writer as fw


def _all_clips(out: Path) -> dict[str, sr.Clip]:
    return {c.key: c for s in sr.list_shards(out) for c in sr.iter_clips(s.tar)}


def test_tarfile_sees_four_members_per_clip(shards: Path) -> None:
    for shard in sr.list_shards(shards):
        with tarfile.open(shard.tar) as tar:
            names = tar.getnames()
        assert len(names) == 4 * shard.clips
        assert [n.split(".", 1)[1] for n in names[:4]] == ["frames", "offsets", "pts", "json"]
        assert " pts " in shard.index.read_text().splitlines()[1]          # DALI's index lists it too
        assert sr.read_manifest(shards).format_version == 2


def test_webdataset_reads_the_shards(shards: Path) -> None:
    import webdataset as wds
    expected = _all_clips(shards)
    urls = [str(s.tar) for s in sr.list_shards(shards)]
    seen = 0
    for sample in wds.WebDataset(urls, shardshuffle=False):
        clip = expected[sample["__key__"]]
        assert sample["frames"] == clip.frames_bytes
        np.testing.assert_array_equal(sr.decode_offsets(sample["offsets"]), clip.offsets)
        np.testing.assert_array_equal(sr.decode_pts(sample["pts"], clip.n_frames), clip.pts)
        assert json.loads(sample["json"]) == clip.meta
        seen += 1
    assert seen == len(expected)


def test_dali_reads_the_shards_with_the_written_index(shards: Path) -> None:
    pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn, pipeline_def
    infos = sr.list_shards(shards)
    expected = [c for s in infos for c in sr.iter_clips(s.tar)]

    @pipeline_def(batch_size=len(expected), num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.readers.webdataset(paths=[str(s.tar) for s in infos],
                                           index_paths=[str(s.index) for s in infos],
                                           ext=["frames", "offsets", "pts", "json"],
                                           missing_component_behavior="error"))

    p = pipe()
    p.build()
    frames, offsets, pts, meta = p.run()
    for k, clip in enumerate(expected):
        assert np.array(frames.at(k)).tobytes() == clip.frames_bytes
        assert np.array(offsets.at(k)).tobytes() == fw.encode_offsets(clip.offsets)
        assert np.array(pts.at(k)).tobytes() == fw.encode_pts(clip.pts)
        assert json.loads(np.array(meta.at(k)).tobytes()) == clip.meta


def test_clip_frame_table_gives_byte_ranges_of_single_frames(shards: Path) -> None:
    shard = sr.list_shards(shards)[0]
    data = shard.tar.read_bytes()
    for loc, clip in zip(sr.clip_frame_table(shard.tar), sr.iter_clips(shard.tar)):
        assert loc.key == clip.key and loc.n_frames == clip.n_frames
        for i in (0, clip.n_frames - 1):
            start, length = loc.frame_range(i)
            assert data[start:start + length] == clip.frame(i)
