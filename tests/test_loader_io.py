"""What the loaders cost besides decoding: no tensors built per batch, no copies of DALI's output, and
the fallback's reads (each rank its own shards, exactly the pairs' JPEG bytes)."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from coded_shards import write_coded_shards

from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
from pipeline.loader import build_pair_loader
from pipeline.sampling import rank_clips

N_FRAMES = [40, 10, 60, 3, 50, 2, 45, 30]
S = 32


@pytest.fixture(scope="module")
def coded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("coded"), N_FRAMES, clips_per_shard=2)


def config(root: Path, **kw) -> LoaderConfig:
    base = {"shards": root, "batch_size": 4, "num_workers": 0, "sampling": PairSamplingConfig(crop_size=S)}
    base.update(kw)
    return LoaderConfig(**base)


@pytest.mark.parametrize("kind,normalize_on", [("dali", "auto"), ("dali", "torch"), ("wds", "auto")])
def test_no_tensor_is_built_per_batch(coded: Path, kind: str, normalize_on: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.tensor(..., device=...) is a blocking host-to-device copy on a GPU: none may run per batch."""
    loader = build_pair_loader(config(coded, kind=kind, normalize_on=normalize_on))
    made = []
    real = torch.tensor

    def counting(*args, **kwargs):
        if "device" in kwargs:
            made.append(kwargs["device"])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", counting)
    batches = list(loader)
    assert len(batches) == len(loader) > 2
    assert batches[0].f1.dtype == torch.float32 and batches[0].f1.abs().max() > 1       # normalised
    assert made == []


def test_dali_batches_share_dalis_memory_and_stay_intact(coded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No copy of DALI's output (DLPack), and a batch kept by the consumer is never overwritten by the
    batches DALI produces after it (the dynamic executor does not reuse output buffers)."""
    import pipeline.dali_loader as dl

    shared = []
    real = dl.dali_to_torch

    def checking(out):
        tensor = real(out)
        shared.append(tensor.data_ptr() == out.as_tensor().data_ptr())
        return tensor

    monkeypatch.setattr(dl, "dali_to_torch", checking)
    loader = build_pair_loader(config(coded, dtype="uint8", decoder=DecoderConfig(num_threads=1)))
    kept, copies = [], []
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:
            kept.append(batch)
            copies.append((batch.f1.clone(), batch.f2.clone()))
    assert shared and all(shared)
    assert all(torch.equal(b.f1, c1) and torch.equal(b.f2, c2) for b, (c1, c2) in zip(kept, copies))
    assert len({b.f1.data_ptr() for b in kept}) == len(kept)              # every batch its own buffer


def test_the_fallback_delivers_the_dali_loaders_batches(synthetic_shards: Path) -> None:
    """Same pairs in the same batches, and the same pixels up to rounding: the fallback resizes as the
    DALI graph does (linear, no antialiasing)."""
    batches = {}
    for kind in ("dali", "wds"):
        loader = build_pair_loader(config(synthetic_shards, kind=kind, dtype="uint8", debug_indices=True,
                                          sampling=PairSamplingConfig(crop_size=48)))
        batches[kind] = list(loader)
    for a, b in zip(batches["dali"], batches["wds"], strict=True):
        assert a.index == b.index
        for x, y in ((a.f1, b.f1), (a.f2, b.f2)):
            diff = (x.float() - y.float()).abs()
            assert diff.mean() < 0.5 and diff.max() <= 2


class ReadTars:
    """Records every tar this process reads from, whichever way it reads it (open, or pread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: set[str] = set()
        real_open, real_pread = builtins.open, os.pread

        def py_open(path, *args, **kwargs):
            if str(path).endswith(".tar"):
                self.names.add(Path(path).name)
            return real_open(path, *args, **kwargs)

        def pread(fd, *args):
            self.names.add(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
            return real_pread(fd, *args)

        monkeypatch.setattr(builtins, "open", py_open)
        monkeypatch.setattr(os, "pread", pread)


def test_wds_ranks_read_disjoint_shards_and_only_their_pairs_bytes(coded: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """Four shards of two clips, two ranks: in every epoch each rank reads two shards, none of the
    other's, and exactly its pairs' own JPEG bytes (no clip is streamed whole)."""
    read, own, counted = {}, [], []
    for rank in range(2):
        loader = build_pair_loader(config(coded, kind="wds", rank=rank, world_size=2, batch_size=2,
                                          debug_indices=True))
        tars = ReadTars(monkeypatch)
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            pairs = [p for b in loader for p in b.index]
            read[rank, epoch] = set(tars.names)
            tars.names.clear()
            keys = loader.index.keys()
            clip = np.array([keys.index(k) for k, _, _ in pairs])
            frames = np.array([i for _, i, _ in pairs]), np.array([j for _, _, j in pairs])
            own.append(int(sum(loader.index.frame_bytes(clip, f).sum() for f in frames)))
        monkeypatch.undo()
        counted.append(getattr(loader, "bytes_read", None))
    for epoch in (0, 1):
        assert len(read[0, epoch]) == len(read[1, epoch]) == 2 and not read[0, epoch] & read[1, epoch]
    assert counted == [own[0] + own[1], own[2] + own[3]]


@pytest.mark.parametrize("n_clips,shard_size,world", [(8, 2, 2), (12, 3, 4), (13, 4, 3), (40, 7, 4)])
def test_ranks_take_runs_of_shards(n_clips: int, shard_size: int, world: int) -> None:
    """Each rank's clips come from a run of shards; two ranks share at most the shard where their runs
    meet, none when the runs end on shard edges; every clip is read once (bar the padding)."""
    shard_of = np.arange(n_clips) // shard_size
    for epoch in range(3):
        shares = [rank_clips(n_clips, 0, epoch, r, world, shard_of) for r in range(world)]
        assert len({len(s) for s in shares}) == 1
        assert set(np.concatenate(shares).tolist()) == set(range(n_clips))
        sets = [set(shard_of[s].tolist()) for s in shares]
        overlaps = [len(a & b) for k, a in enumerate(sets) for b in sets[k + 1:]]
        assert sum(overlaps) <= world - 1 and max(overlaps) <= 1
        if n_clips % world == 0 and (n_clips // world) % shard_size == 0:
            assert sum(overlaps) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_batches_are_built_without_host_copies_and_stay_intact(coded: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(k.get("device")) or real(*a, **k))
    loader = build_pair_loader(config(coded, device="cuda", dtype="float32"))
    kept = [(b.f1, b.f2, b.f1.clone(), b.f2.clone()) for e in range(3) for b in loader]
    torch.cuda.synchronize()
    assert not [d for d in made if d is not None]
    assert all(torch.equal(a, c) and torch.equal(b, d) for a, b, c, d in kept)
    assert kept[0][0].device.type == "cuda" and kept[0][0].is_contiguous()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_fallback_keeps_its_batches_pinned_up_to_the_copy(coded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.batch import FrameFinisher

    pinned = []
    real = FrameFinisher.__call__
    monkeypatch.setattr(FrameFinisher, "__call__", lambda self, x: pinned.append(x.is_pinned()) or real(self, x))
    batches = list(build_pair_loader(config(coded, kind="wds", device="cuda", num_workers=1)))
    assert pinned and all(pinned) and batches[0].f1.device.type == "cuda"


def test_the_parallel_source_has_its_own_prefetch_and_three_outputs(coded: Path, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    """Batches in flight in the byte reader's workers follow their count, not the pipeline's depth; the
    source hands over the f1 JPEGs, the f2 JPEGs and one int32 meta array (the replaced-slot flag in it)."""
    from nvidia.dali import fn

    import pipeline.dali_graph as graph
    from pipeline.dali_source import META_COLUMNS

    seen = []
    real = fn.external_source

    def spying(source, **kwargs):
        seen.append(kwargs)
        return real(source, **kwargs)

    monkeypatch.setattr(graph.fn, "external_source", spying)
    for decoder, depth in ((DecoderConfig(py_num_workers=2), 4), (DecoderConfig(source_prefetch=6), 6)):
        loader = build_pair_loader(config(coded, decoder=replace(decoder, parallel_source=True, num_threads=1)))
        next(iter(loader))
        loader.close()
        assert seen[-1]["num_outputs"] == 3 and seen[-1]["prefetch_queue_depth"] == depth
    source = loader._source
    f1, f2, meta = source(type("Info", (), {"iteration": 0})())
    assert len(f1) == len(f2) == 4 and meta.dtype == np.int32 and meta.shape == (4, META_COLUMNS)
    assert (meta[:, 8] == 0).all()                             # no pair of these shards was replaced


def test_the_fallback_opens_one_dataloader_for_all_epochs(coded: Path) -> None:
    loader = build_pair_loader(config(coded, kind="wds", num_workers=1))
    for epoch in range(3):
        loader.set_epoch(epoch)
        assert len(list(loader)) == len(loader)
    assert loader.loader_builds == 1
    loader.close()


def test_fallback_workers_start_clean_after_opencv_ran_threads_here(coded: Path) -> None:
    """A process whose OpenCV thread pool has run (evaluation resizes and dilates with it) then opens the
    fallback with workers: it gets its batches. Forked workers copied the pool's locks and hung for good."""
    script = """
import sys
import cv2, numpy as np
from pathlib import Path
from pipeline.config import LoaderConfig, PairSamplingConfig
from pipeline.loader import build_pair_loader
cv2.setNumThreads(2)
for _ in range(20):
    cv2.resize(np.zeros((1500, 1500, 3), np.uint8), (700, 700))
cfg = LoaderConfig(shards=Path(sys.argv[1]), batch_size=4, num_workers=1, kind="wds",
                   sampling=PairSamplingConfig(crop_size=32))
print(sum(1 for _ in build_pair_loader(cfg)))
"""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, str(coded)], capture_output=True, text=True,
                          timeout=180, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0
