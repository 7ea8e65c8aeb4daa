"""Frame tables: a shard folder opens without reading a tar header, workers get a path instead of an
index, shards written before the tables load after `make_shards.py --reindex`, and the table agrees with
what `tarfile` reads."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from coded_shards import write_coded_shards

from pipeline import shard_reader as sr
from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
from pipeline.dali_source import PairSource
from pipeline.dataset import ShardDataset
from pipeline.frame_index import FrameIndex, ShardError
from pipeline.loader import build_pair_loader
from pipeline.sampling import EpochPlans, PlanKey
from pipeline.shard_format import frame_table_path_for

N_FRAMES = [40, 10, 60, 3, 50, 2, 45, 30]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def coded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("tables"), N_FRAMES, clips_per_shard=3)


def config(root: Path, **kw) -> LoaderConfig:
    base = {"shards": root, "batch_size": 4, "dtype": "uint8", "num_workers": 0, "debug_indices": True,
            "sampling": PairSamplingConfig(crop_size=32)}
    return LoaderConfig(**{**base, **kw})


def test_a_folder_opens_and_loads_without_reading_a_tar_header(coded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening used to parse every tar header with `tarfile` (85% of a Kinetics-sized open)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("tarfile used to open the shard folder")

    monkeypatch.setattr(tarfile, "open", forbidden)
    monkeypatch.setattr(tarfile.TarFile, "next", forbidden)
    data = ShardDataset.open(coded)
    assert list(data.clips.n_frames) == N_FRAMES
    for kind in ("dali", "wds"):
        batch = next(iter(build_pair_loader(config(coded, kind=kind), data)))
        assert batch.f1.shape == (4, 3, 32, 32) and len(batch.index) == 4


def test_frame_ranges_and_checksums_match_the_tar(coded: Path) -> None:
    index = FrameIndex.open(coded)
    reader_view = {c.key: c for s in sr.list_shards(coded) for c in sr.iter_clips(s.tar)}
    keys = index.keys()
    assert sorted(keys) == sorted(reader_view)
    for clip, key in enumerate(keys):
        n = int(index.n_frames[clip])
        frames = np.arange(n)
        start, length, crc = index.frame_entries(np.full(n, clip), frames)
        tar_bytes = index.tars[int(index.shard[clip])].read_bytes()
        for i in range(n):
            stored = reader_view[key].frame(i)
            assert tar_bytes[start[i]:start[i] + length[i]] == stored
            assert int(crc[i]) == __import__("zlib").crc32(stored)
        assert index.meta(clip)["key"] == key and index.clip_of(index.tars[int(index.shard[clip])], key) == clip


def test_sources_pickle_as_a_folder_path_not_an_index(coded: Path, tmp_path: Path) -> None:
    """What DALI's spawned workers and the fallback's DataLoader workers receive: a few hundred bytes, the
    same for a folder eight times larger; unpickled, it reopens the folder."""
    bigger = write_coded_shards(tmp_path / "bigger", N_FRAMES * 8, clips_per_shard=3)
    sizes = []
    for root in (coded, bigger):
        data = ShardDataset.open(root)
        plans = EpochPlans(data.index, PairSamplingConfig(crop_size=32), PlanKey(0, 0, 0, 1), 4)
        plans.plan(0)                                           # a cached plan is not sent either
        blob = pickle.dumps(PairSource(data, plans))
        sizes.append(len(blob))
        assert b"numpy" not in blob
        again = pickle.loads(blob)
        assert again.data.root == data.root and again.data.index is again.plans.index
    assert sizes[0] < 2000 and abs(sizes[1] - sizes[0]) < 64


def test_a_spawned_source_worker_opens_the_folder_itself(coded: Path) -> None:
    """The GPU path's start method (spawn), run on the CPU: same pairs as the in-process source."""
    spawned = build_pair_loader(config(coded, py_start_method="spawn",
                                       decoder=DecoderConfig(parallel_source=True, py_num_workers=1)))
    inline = build_pair_loader(config(coded, decoder=DecoderConfig(parallel_source=False)))
    got = [b.index for b in spawned]
    spawned.close()
    assert got == [b.index for b in inline] and len(got) == len(inline)


def without_tables(root: Path, out: Path) -> Path:
    """A copy of `root` as today's make_shards wrote it before frame tables: no .frametable files."""
    shutil.copytree(root, out)
    for table in out.glob("*.frametable"):
        table.unlink()
    return out


def test_shards_without_tables_name_the_reindex_command_then_load_after_it(coded: Path, tmp_path: Path) -> None:
    old = without_tables(coded, tmp_path / "old")
    with pytest.raises(ShardError, match=r"no frame table .* tools/make_shards.py --reindex"):
        ShardDataset.open(old)
    done = subprocess.run([sys.executable, str(REPO / "tools" / "make_shards.py"), "--reindex", str(old)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for table in old.glob("*.frametable"):                      # the very tables the writer makes
        assert table.read_bytes() == (coded / table.name).read_bytes()
    again = subprocess.run([sys.executable, str(REPO / "tools" / "make_shards.py"), "--reindex", str(old)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    pairs = [b.index for b in build_pair_loader(config(old))]
    assert pairs == [b.index for b in build_pair_loader(config(coded))]


def test_a_shard_rewritten_after_its_table_is_refused(coded: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(coded, copy)
    tar = sr.list_shards(copy)[1].tar
    with open(tar, "ab") as f:
        f.write(bytes(512))
    with pytest.raises(ShardError, match=r"coded-000001.tar: \d+ bytes on disk, the manifest says"):
        ShardDataset.open(copy)
    frame_table_path_for(tar).write_bytes(b"garbage")
    with pytest.raises(ShardError, match="not a frame table"):
        ShardDataset.open(copy)
