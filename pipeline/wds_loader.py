"""The fallback loader for machines without DALI: webdataset streams whole clips out of the shards,
DataLoader workers decode with Pillow, and the pairs are exactly those of `sampling.plan_epoch`
(the same plan the DALI loader uses), so both loaders have identical sampling semantics.

Each worker streams a disjoint subset of the shards that hold this rank's clips; a clip's K pairs
are cut from one read of it. Bytes per pair are therefore about clip bytes / K (see siammae-bench).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.batch import PairBatch, finish_frames
from pipeline.config import LoaderConfig
from pipeline.frame_index import FrameIndex, ShardError
from pipeline.pil_ops import augment_pair, decode_jpeg
from pipeline.sampling import PairPlan, batches_per_epoch, epoch_rng, plan_epoch
from pipeline.shard_format import FRAMES_EXT, OFFSETS_EXT, decode_offsets


def _wanted_member(name: str) -> bool:
    return name.endswith(("." + FRAMES_EXT, "." + OFFSETS_EXT))


class WdsPairDataset(IterableDataset):
    """Yields chunks (plan positions [n], f1 [n,3,S,S] uint8, f2 [n,3,S,S] uint8) of one rank's epoch."""

    def __init__(self, cfg: LoaderConfig, index: FrameIndex, chunk: int) -> None:
        super().__init__()
        self.cfg, self.index, self.chunk = cfg, index, chunk
        self.epoch = 0

    def plan(self) -> PairPlan:
        ix, c = self.index, self.cfg
        return plan_epoch(ix.n_frames, ix.height, ix.width, c.sampling, c.seed, self.epoch, c.rank,
                          c.world_size)

    def worker_shards(self, plan: PairPlan, worker: int, workers: int) -> list[int]:
        needed = np.unique(self.index.shard[plan.clip])
        order = epoch_rng(self.cfg.seed, self.epoch, self.cfg.rank, stream=3).permutation(needed)
        return order[worker::workers].tolist()

    def _clips(self, shards: list[int]) -> Iterator[tuple[str, bytes, np.ndarray]]:
        for s in shards:
            url = str(self.index.tars[s])
            stream = wds.WebDataset(url, shardshuffle=False, nodesplitter=None, workersplitter=None,
                                    empty_check=False, select_files=_wanted_member)
            try:
                for sample in stream:
                    yield sample["__key__"], sample[FRAMES_EXT], decode_offsets(sample[OFFSETS_EXT])
            except (KeyError, ValueError, OSError, EOFError) as exc:
                raise ShardError(f"{url}: cannot read shard ({type(exc).__name__}: {exc})") from exc

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan = self.plan()
        positions: dict[str, list[int]] = {}
        for pos, clip in enumerate(plan.clip.tolist()):
            positions.setdefault(self.index.keys[clip], []).append(pos)
        size = self.cfg.sampling.crop_size
        pos_buf: list[int] = []
        f1_buf: list[torch.Tensor] = []
        f2_buf: list[torch.Tensor] = []
        for key, blob, offs in self._clips(self.worker_shards(plan, worker, workers)):
            for p in positions.get(key, ()):
                i, j = int(plan.i[p]), int(plan.j[p])
                if j + 1 >= len(offs):
                    raise ShardError(f"{key}: frame {j} planned but the clip has {len(offs) - 1} frames")
                a = decode_jpeg(blob[offs[i]:offs[i + 1]])
                b = decode_jpeg(blob[offs[j]:offs[j + 1]])
                x1, x2 = augment_pair(a, b, plan.crop[p], bool(plan.flip[p]), size)
                pos_buf.append(p)
                f1_buf.append(x1)
                f2_buf.append(x2)
                if len(pos_buf) == self.chunk:
                    yield torch.tensor(pos_buf), torch.stack(f1_buf), torch.stack(f2_buf)
                    pos_buf, f1_buf, f2_buf = [], [], []
        if pos_buf:
            yield torch.tensor(pos_buf), torch.stack(f1_buf), torch.stack(f2_buf)


class WdsPairLoader:
    """Iterable of PairBatch, one epoch per iteration; see pipeline.loader.build_pair_loader."""

    def __init__(self, cfg: LoaderConfig, index: FrameIndex | None = None) -> None:
        self.cfg = cfg
        self.index = index if index is not None else FrameIndex.load(cfg.shards)
        self.dataset = WdsPairDataset(cfg, self.index, chunk=cfg.batch_size)
        self.epoch = 0
        self.n_pairs = len(self.dataset.plan())
        self.shard_bytes_read = 0

    def __len__(self) -> int:
        return batches_per_epoch(self.n_pairs, self.cfg.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batch(self, plan: PairPlan, pos: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor) -> PairBatch:
        cfg = self.cfg
        index = None
        if cfg.debug_indices:
            index = [(self.index.keys[int(plan.clip[p])], int(plan.i[p]), int(plan.j[p])) for p in pos.tolist()]
        norm = cfg.dtype != "uint8"
        return PairBatch(finish_frames(f1, device=cfg.device, dtype=cfg.dtype, normalize=norm),
                         finish_frames(f2, device=cfg.device, dtype=cfg.dtype, normalize=norm), index)

    def __iter__(self) -> Iterator[PairBatch]:
        cfg, B = self.cfg, self.cfg.batch_size
        self.dataset.epoch = self.epoch
        plan = self.dataset.plan()
        self.shard_bytes_read += sum(self.index.tars[s].stat().st_size
                                     for s in np.unique(self.index.shard[plan.clip]).tolist())
        loader = DataLoader(self.dataset, batch_size=None, num_workers=cfg.num_workers,
                            pin_memory=cfg.device == "cuda", prefetch_factor=2 if cfg.num_workers else None)
        pending: list[Any] = []
        first: tuple[torch.Tensor, ...] | None = None
        n_pending, emitted = 0, 0
        for chunk in loader:
            pending.append(chunk)
            n_pending += len(chunk[0])
            while n_pending >= B:
                batch, pending = _take(pending, B)
                n_pending -= B
                first = first or batch
                emitted += 1
                yield self._batch(plan, *batch)
        if n_pending:                                   # fill the last batch from the epoch's start
            rest, _ = _take(pending, n_pending)
            src = first or rest
            fill = torch.arange(B - n_pending) % len(src[0])
            emitted += 1
            yield self._batch(plan, *(torch.cat([r, s[fill]]) for r, s in zip(rest, src)))
        self.epoch += 1
        if emitted != len(self):
            raise ShardError(f"{cfg.shards}: produced {emitted} batches, expected {len(self)} "
                             "(a shard changed after the loader was built?)")

    def close(self) -> None:
        pass


def _take(chunks: list[Any], n: int) -> tuple[tuple[torch.Tensor, ...], list[Any]]:
    """Split the first n pairs off a list of (pos, f1, f2) chunks."""
    pos = torch.cat([c[0] for c in chunks])
    f1 = torch.cat([c[1] for c in chunks])
    f2 = torch.cat([c[2] for c in chunks])
    rest = [(pos[n:], f1[n:], f2[n:])] if len(pos) > n else []
    return (pos[:n], f1[:n], f2[:n]), rest

