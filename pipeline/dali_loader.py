"""The main loader: DALI decodes and augments pairs whose bytes come from the random-access source
(or, with cfg.source="reader", from fn.readers.webdataset); batches come out as torch tensors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pipeline.batch import PairBatch, finish_frames
from pipeline.config import LoaderConfig
from pipeline.dali_graph import GraphSpec, build_pipeline
from pipeline.dali_reader_graph import READER_NAME, build_reader_pipeline
from pipeline.dali_source import IndexedPairSource
from pipeline.frame_index import FrameIndex
from pipeline.shard_format import list_shards


def dali_graph_spec(cfg: LoaderConfig, frame_hint: tuple[int, int] = (240, 320)) -> GraphSpec:
    normalize = cfg.dtype != "uint8" and not cfg.normalize_in_torch
    dali_dtype = "float16" if cfg.dtype == "float16" else "float32"
    return GraphSpec(cfg.sampling, cfg.decoder, gpu=cfg.device == "cuda", normalize=normalize,
                     dtype=dali_dtype, frame_hint=frame_hint)


def dali_to_torch(out: Any, device: str) -> torch.Tensor:
    """A dense DALI TensorList -> a torch tensor on `device` that owns its memory (one copy)."""
    tensor = out.as_tensor()
    if device == "cuda":
        return torch.from_dlpack(tensor).clone()
    return torch.from_numpy(np.array(tensor, copy=True))


class DaliPairLoader:
    """Iterable of PairBatch, one epoch per iteration; see pipeline.loader.build_pair_loader."""

    def __init__(self, cfg: LoaderConfig, index: FrameIndex | None = None) -> None:
        if cfg.source == "reader" and cfg.debug_indices:
            raise ValueError("debug_indices needs source='index' (the reader graph does not know keys)")
        self.cfg = cfg
        self.index = index if index is not None else FrameIndex.load(cfg.shards)
        hint = (int(self.index.height.max()), int(self.index.width.max()))
        self.spec = dali_graph_spec(cfg, hint)
        self.epoch = 0
        self._pipe: Any = None
        self._base_epoch = 0
        self._consumed = 0                                  # batches taken since the pipe was built
        self._source = IndexedPairSource(self.index, cfg.sampling, cfg.batch_size, cfg.seed, cfg.rank,
                                         cfg.world_size, base_epoch=0)
        self._batches = self._source.batches_per_epoch
        if cfg.source == "reader":                          # one pair per clip read, DALI's sharding
            clips = len(self.index)
            per_rank = -(-clips // cfg.world_size)
            self._batches = -(-per_rank // cfg.batch_size)

    def __len__(self) -> int:
        return self._batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def pairs_per_epoch(self) -> int:
        return self._batches * self.cfg.batch_size

    def _ensure_pipe(self) -> None:
        expected = self._base_epoch + self._consumed // max(self._batches, 1)
        aligned = self._consumed % max(self._batches, 1) == 0 and expected == self.epoch
        if self._pipe is not None and aligned:
            return
        self.close()
        cfg = self.cfg
        # The GPU this process trains on (torchrun's LOCAL_RANK, set by the trainer), not the global rank,
        # which exceeds the device count on every node after the first.
        device_id = torch.cuda.current_device() if cfg.device == "cuda" else None
        if cfg.source == "reader":
            shards = list_shards(cfg.shards)
            self._pipe = build_reader_pipeline([s.tar for s in shards], [s.index for s in shards], self.spec,
                                               cfg.batch_size, shard_id=cfg.rank, num_shards=cfg.world_size,
                                               seed=cfg.seed + self.epoch, device_id=device_id)
        else:
            self._source = IndexedPairSource(self.index, cfg.sampling, cfg.batch_size, cfg.seed, cfg.rank,
                                             cfg.world_size, base_epoch=self.epoch)
            # fork is cheapest, but never fork a process that has touched CUDA
            start = "spawn" if cfg.device == "cuda" else "fork"
            self._pipe = build_pipeline(self._source, self.spec, cfg.batch_size,
                                        parallel=cfg.parallel_source, seed=cfg.seed,
                                        device_id=device_id, py_start_method=start)
        self._base_epoch, self._consumed = self.epoch, 0

    def __iter__(self) -> Iterator[PairBatch]:
        self._ensure_pipe()
        cfg = self.cfg
        for _ in range(self._batches):
            f1, f2, debug = self._pipe.run()
            self._consumed += 1
            index = None
            if cfg.debug_indices:
                rows = np.array(debug.as_tensor()).tolist()
                index = [(self.index.keys[c], i, j) for c, i, j in rows]
            norm = cfg.normalize_in_torch
            yield PairBatch(finish_frames(dali_to_torch(f1, cfg.device), device=cfg.device, dtype=cfg.dtype,
                                          normalize=norm),
                            finish_frames(dali_to_torch(f2, cfg.device), device=cfg.device, dtype=cfg.dtype,
                                          normalize=norm), index)
        self.epoch += 1

    @property
    def reader_name(self) -> str:
        return READER_NAME

    def bytes_read(self) -> int | None:
        """Bytes the random-access source read in this process (None when its workers read them)."""
        if self.cfg.source == "index" and not self.cfg.parallel_source:
            return self._source.reader.bytes_read
        return None

    def close(self) -> None:
        if self._pipe is not None:
            del self._pipe
            self._pipe = None
