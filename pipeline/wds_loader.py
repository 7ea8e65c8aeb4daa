"""The fallback loader for machines without DALI: webdataset streams whole clips out of the shards,
DataLoader workers decode with Pillow, and the pairs are exactly those of `sampling.plan_epoch`
(the same plan the DALI loader uses), so both loaders have identical sampling semantics.

Each worker streams a disjoint subset of the shards that hold this rank's clips; a clip's K pairs
are cut from one read of it. Bytes per pair are therefore about clip bytes / K (see siammae-bench).
Frames get the same byte check as in the DALI loader, then Pillow's decode; a pair that reads a bad
frame is replaced by the same pair the DALI loader picks (its frames are read by pread).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL.Image import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.bad_frames import BadFrame, BadFrameLedger, FrameChecker, Replacement, replace_pair
from pipeline.batch import PairBatch, finish_frames
from pipeline.config import LoaderConfig
from pipeline.frame_index import FrameIndex, FrameReader, ShardError
from pipeline.pil_ops import augment_pair, decode_jpeg
from pipeline.sampling import PairPlan, batches_per_epoch, epoch_rng, plan_epoch
from pipeline.shard_format import FRAMES_EXT, OFFSETS_EXT, decode_offsets


def _wanted_member(name: str) -> bool:
    return name.endswith(("." + FRAMES_EXT, "." + OFFSETS_EXT))


class WdsPairDataset(IterableDataset):
    """Yields chunks (slots [n], sources [n], f1 [n,3,S,S] uint8, f2 [n,3,S,S] uint8, replacements) of one
    rank's epoch: slot = plan position filled, source = plan position of the pair delivered there (the same
    unless the slot's pair read a bad frame, see pipeline.bad_frames)."""

    def __init__(self, cfg: LoaderConfig, index: FrameIndex, chunk: int) -> None:
        super().__init__()
        self.cfg, self.index, self.chunk = cfg, index, chunk
        self.epoch = 0
        self.checker = FrameChecker(index)
        self.reader = FrameReader(index)

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

    def decode_pair(self, clip: int, i: int, j: int, a: bytes, b: bytes) -> tuple[list[Image], list[BadFrame]]:
        """Both frames decoded, or the bad ones: the shared byte check first, then Pillow's decoder."""
        bad = self.checker.problems(clip, (i, j), [a, b])
        if bad:
            return [], bad
        images = []
        for frame, data in ((i, a), (j, b)):
            try:
                images.append(decode_jpeg(data))
            except Exception as exc:  # noqa: BLE001 (Pillow raises many types on damaged data)
                bad.append(BadFrame.at(self.index, clip, frame, f"Pillow: {type(exc).__name__}: {exc}"))
        return ([] if bad else images), bad

    def _replace(self, plan: PairPlan, slot: int, bad: list[BadFrame]) -> tuple[Replacement, list[Image]]:
        """The replacement pair (read by pread from its own shard) and its two decoded frames."""
        decoded: dict[int, list[Image]] = {}

        def check(q: int) -> list[BadFrame]:
            clip, i, j = int(plan.clip[q]), int(plan.i[q]), int(plan.j[q])
            a, b = self.reader.read_bytes(np.array([clip, clip]), np.array([i, j]))
            decoded[q], problems = self.decode_pair(clip, i, j, a, b)
            return problems

        c = self.cfg
        rep = replace_pair(slot, bad, len(plan), c.seed, self.epoch, c.rank, check)
        return rep, decoded[rep.source]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan = self.plan()
        positions: dict[str, list[int]] = {}
        for pos, clip in enumerate(plan.clip.tolist()):
            positions.setdefault(self.index.keys[clip], []).append(pos)
        clip_of = {k: c for c, k in enumerate(self.index.keys)}
        size = self.cfg.sampling.crop_size
        rows: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
        replacements: list[Replacement] = []
        for key, blob, offs in self._clips(self.worker_shards(plan, worker, workers)):
            for p in positions.get(key, ()):
                i, j = int(plan.i[p]), int(plan.j[p])
                if j + 1 >= len(offs):
                    raise ShardError(f"{key}: frame {j} planned but the clip has {len(offs) - 1} frames")
                images, bad = self.decode_pair(clip_of[key], i, j, blob[offs[i]:offs[i + 1]],
                                               blob[offs[j]:offs[j + 1]])
                source = p
                if bad:
                    rep, images = self._replace(plan, p, bad)
                    replacements.append(rep)
                    source = rep.source
                x1, x2 = augment_pair(*images, plan.crop[source], bool(plan.flip[source]), size)
                rows.append((p, source, x1, x2))
                if len(rows) == self.chunk:
                    yield _chunk(rows, replacements)
                    rows, replacements = [], []
        if rows:
            yield _chunk(rows, replacements)


def _chunk(rows: list[tuple[int, int, torch.Tensor, torch.Tensor]], replacements: list[Replacement]) -> tuple:
    slots, sources, f1, f2 = zip(*rows)
    return torch.tensor(slots), torch.tensor(sources), torch.stack(f1), torch.stack(f2), list(replacements)


class WdsPairLoader:
    """Iterable of PairBatch, one epoch per iteration; see pipeline.loader.build_pair_loader."""

    def __init__(self, cfg: LoaderConfig, index: FrameIndex | None = None) -> None:
        self.cfg = cfg
        self.index = index if index is not None else FrameIndex.load(cfg.shards)
        self.dataset = WdsPairDataset(cfg, self.index, chunk=cfg.batch_size)
        self.epoch = 0
        self.n_pairs = len(self.dataset.plan())
        self.shard_bytes_read = 0
        self.bad_frames = BadFrameLedger(cfg.bad_frame_limit, cfg.bad_frame_log, cfg.rank)

    def __len__(self) -> int:
        return batches_per_epoch(self.n_pairs, self.cfg.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def pairs_per_epoch(self) -> int:
        """Pairs of this rank's epoch plan (the last batch wraps to the epoch's start to fill up)."""
        return self.n_pairs

    def _batch(self, plan: PairPlan, slots: torch.Tensor, sources: torch.Tensor, f1: torch.Tensor,
               f2: torch.Tensor, pending: dict[int, Replacement]) -> PairBatch:
        cfg = self.cfg
        reps = [pending.pop(s) for s in slots.tolist() if s in pending]
        if reps:
            self.bad_frames.record(self.epoch, reps, self.n_pairs)
        index = None
        if cfg.debug_indices:
            index = [(self.index.keys[int(plan.clip[p])], int(plan.i[p]), int(plan.j[p])) for p in sources.tolist()]
        norm = cfg.dtype != "uint8"
        return PairBatch(finish_frames(f1, device=cfg.device, dtype=cfg.dtype, normalize=norm),
                         finish_frames(f2, device=cfg.device, dtype=cfg.dtype, normalize=norm), index)

    def __iter__(self) -> Iterator[PairBatch]:
        cfg, B = self.cfg, self.cfg.batch_size
        self.dataset.epoch = self.epoch
        self.dataset.checker = FrameChecker(self.index, self.bad_frames.known_codes(self.index))
        plan = self.dataset.plan()
        self.shard_bytes_read += sum(self.index.tars[s].stat().st_size
                                     for s in np.unique(self.index.shard[plan.clip]).tolist())
        loader = DataLoader(self.dataset, batch_size=None, num_workers=cfg.num_workers,
                            pin_memory=cfg.device == "cuda", prefetch_factor=2 if cfg.num_workers else None)
        pending: list[Any] = []
        replaced: dict[int, Replacement] = {}              # reported when their slot is delivered
        first: tuple[torch.Tensor, ...] | None = None
        n_pending, emitted = 0, 0
        for *chunk, reps in loader:
            pending.append(chunk)
            replaced.update((r.slot, r) for r in reps)
            n_pending += len(chunk[0])
            while n_pending >= B:
                batch, pending = _take(pending, B)
                n_pending -= B
                first = first or batch
                emitted += 1
                yield self._batch(plan, *batch, replaced)
        if n_pending:                                   # fill the last batch from the epoch's start
            rest, _ = _take(pending, n_pending)
            src = first or rest
            fill = torch.arange(B - n_pending) % len(src[0])
            emitted += 1
            yield self._batch(plan, *(torch.cat([r, s[fill]]) for r, s in zip(rest, src)), replaced)
        self.epoch += 1
        if emitted != len(self):
            raise ShardError(f"{cfg.shards}: produced {emitted} batches, expected {len(self)} "
                             "(a shard changed after the loader was built?)")

    def close(self) -> None:
        pass


def _take(chunks: list[Any], n: int) -> tuple[tuple[torch.Tensor, ...], list[Any]]:
    """Split the first n pairs off a list of chunks (tuples of tensors with pairs along dim 0)."""
    columns = [torch.cat(parts) for parts in zip(*chunks)]
    rest = [tuple(c[n:] for c in columns)] if len(columns[0]) > n else []
    return tuple(c[:n] for c in columns), rest
