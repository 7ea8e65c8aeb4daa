"""The main loader: DALI decodes and augments pairs whose bytes come from the random-access source
(or, with cfg.source="reader", from fn.readers.webdataset); batches come out as torch tensors.

Bad frames: the source replaces pairs whose bytes fail the structural check (no pipeline restart); a
frame that passes it but fails DALI's decoder fails its whole batch, so the loader decodes that batch's
frames one by one (`dali_decode_check`), records the culprits as known bad and rebuilds the pipeline at
that very batch. In the normal case the pipeline is built once and runs across epochs: an epoch is cut
to whole training steps (`LoaderConfig.batches_per_step`), so consecutive epochs are consecutive global
batches, and `set_epoch(epoch, start_batch)` on a resumed run starts the pipeline at that very batch
(no batch is decoded twice).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pipeline.bad_frames import BadFrame, BadFrameLedger
from pipeline.batch import FrameFinisher, PairBatch
from pipeline.config import LoaderConfig
from pipeline.dali_decode_check import decoder_failures
from pipeline.dali_graph import GraphSpec, build_pipeline
from pipeline.dali_reader_graph import build_reader_pipeline
from pipeline.dali_source import DEBUG_COLUMNS, IndexedPairSource
from pipeline.epoch_position import EpochPosition
from pipeline.frame_index import FrameIndex
from pipeline.shard_reader import list_shards


def dali_graph_spec(cfg: LoaderConfig, frame_hint: tuple[int, int] = (240, 320)) -> GraphSpec:
    normalize = cfg.dtype != "uint8" and not cfg.normalize_in_torch
    dali_dtype = "float16" if cfg.dtype == "float16" else "float32"
    return GraphSpec(cfg.sampling, cfg.decoder, gpu=cfg.device == "cuda", normalize=normalize,
                     dtype=dali_dtype, frame_hint=frame_hint)


def dali_to_torch(out: Any) -> torch.Tensor:
    """A dense DALI TensorList (CPU or GPU) -> a torch tensor sharing its memory: no copy.

    Safe because every pipeline here runs DALI's dynamic executor (`exec_dynamic=True`, checked in
    `_build`): it never reuses or overwrites an output buffer in a later `run()`, the buffer lives as
    long as a reference to it (DALI 2.4, `TensorGPU.__dlpack__`: only without the dynamic executor may
    outputs be overwritten once released), and DALI's own PyTorch plugin hands its outputs over the same
    way. On the GPU, torch.from_dlpack passes torch's current stream and DALI makes that stream wait for
    the batch's ready event: the wait is on the device, never on the host. With the legacy executor this
    would need a copy, as the loader made before.
    """
    return torch.from_dlpack(out.as_tensor())


# When the last reference to a GPU output goes, DALI returns the buffer to its pool in the order of
# DALI's own stream, which knows nothing of the training stream that may still be reading it (the host
# runs ahead of the GPU by up to the CUDA launch queue, about a step). As a safety margin the loader
# keeps the outputs of the last few batches referenced, so a buffer is released only steps after the
# kernels that read it were enqueued.
HELD_BATCHES = 3


class DaliPairLoader(EpochPosition):
    """Iterable of PairBatch, one epoch per iteration; see pipeline.loader.build_pair_loader."""

    def __init__(self, cfg: LoaderConfig, index: FrameIndex | None = None) -> None:
        if cfg.source == "reader" and cfg.debug_indices:
            raise ValueError("debug_indices needs source='index' (the reader graph does not know keys)")
        self.cfg = cfg
        self.index = index if index is not None else FrameIndex.load(cfg.shards)
        hint = (int(self.index.height.max()), int(self.index.width.max()))
        self.spec = dali_graph_spec(cfg, hint)
        self.finish = FrameFinisher(cfg.device, cfg.dtype, cfg.normalize_in_torch)
        self._held: deque[Any] = deque(maxlen=HELD_BATCHES if cfg.device == "cuda" else 0)
        self.bad_frames = BadFrameLedger(cfg.bad_frame_limit, cfg.bad_frame_log, cfg.rank)
        self.pipeline_builds = 0
        self._pipe: Any = None
        self._next_batch = -1                               # global batch the pipe delivers next
        self._source = self._new_source(0)
        self._batches = self._source.batches_per_epoch
        if cfg.source == "reader":                          # one pair per clip read, DALI's sharding
            clips = len(self.index)
            per_rank = -(-clips // cfg.world_size)
            self._batches = -(-per_rank // cfg.batch_size)

    @property
    def pairs_per_epoch(self) -> int:
        """Pairs of this rank's epoch plan (the last batch wraps to the epoch's start to fill up)."""
        if self.cfg.source == "reader":
            return self._batches * self.cfg.batch_size
        return self._source.pairs_per_epoch

    def _new_source(self, start_batch: int) -> IndexedPairSource:
        cfg = self.cfg
        return IndexedPairSource(self.index, cfg.sampling, cfg.batch_size, cfg.seed, cfg.rank, cfg.world_size,
                                 start_batch=start_batch, known_bad=self.bad_frames.known_codes(self.index),
                                 batches_per_step=cfg.batches_per_step)

    def _build(self, start_batch: int) -> None:
        """A pipeline whose first batch is global batch `start_batch`."""
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
            self._source = self._new_source(start_batch)
            # fork is cheapest, but never fork a process that has touched CUDA
            start = "spawn" if cfg.device == "cuda" else "fork"
            self._pipe = build_pipeline(self._source, self.spec, cfg.batch_size,
                                        parallel=cfg.parallel_source, seed=cfg.seed,
                                        device_id=device_id, py_start_method=start)
        if not self._pipe.exec_dynamic:         # dali_to_torch's zero-copy hand-over relies on it
            raise RuntimeError("the DALI pipeline does not run the dynamic executor (exec_dynamic)")
        self.pipeline_builds += 1
        self._next_batch = start_batch

    def __iter__(self) -> Iterator[PairBatch]:
        batches = self._pass_batches()
        start = batches.start
        if self._pipe is None or self._next_batch != start:
            self._build(start)
        cfg = self.cfg
        for g in batches:
            outputs = self._run(g)
            self._held.append(outputs)
            f1, f2, meta = outputs
            index = None
            if cfg.debug_indices:
                index = [(self.index.keys[c], i, j) for c, i, j in meta[:, DEBUG_COLUMNS][:, :3].tolist()]
            yield PairBatch(self.finish(dali_to_torch(f1)), self.finish(dali_to_torch(f2)), index)
        self.epoch += 1

    def _run(self, g: int) -> tuple[Any, Any, np.ndarray]:
        """Global batch g: (f1, f2, meta [B, 9]); restarts the pipeline at g after a decoder failure."""
        while True:
            try:
                f1, f2, meta = self._pipe.run()
            except Exception:                  # DALI raises RuntimeError for the whole batch
                if self.cfg.source == "reader" or not self._learn_decoder_failures(g):
                    raise
                self._build(g)
                continue
            self._next_batch = g + 1
            meta = np.asarray(meta.as_tensor())
            if self.cfg.source == "index" and meta[:, DEBUG_COLUMNS][:, 3].any():
                epoch, _, replacements = self._source.resolve(g)
                self.bad_frames.record(epoch, replacements, self.pairs_per_epoch)
            return f1, f2, meta

    def _learn_decoder_failures(self, g: int) -> bool:
        """Decode the frames of batch g (and of the batches DALI may have prefetched after it) one by one;
        record those the decoder fails on. Returns whether any was found."""
        source = self._source
        found: list[BadFrame] = []
        for batch in range(g, g + self.cfg.decoder.prefetch_queue_depth + 1):
            epoch, sources, _ = source.resolve(batch)
            p = source.plan(epoch).take(sources)
            frames = source.reader.read_bytes(np.concatenate([p.clip, p.clip]), np.concatenate([p.i, p.j]))
            anchors = np.tile(np.ascontiguousarray(p.crop[:, [1, 0]], dtype=np.int32), (2, 1))
            shapes = np.tile(np.ascontiguousarray(p.crop[:, [3, 2]], dtype=np.int32), (2, 1))
            clips, numbers = np.concatenate([p.clip, p.clip]), np.concatenate([p.i, p.j])
            for n, error in decoder_failures(frames, anchors, shapes, self.spec, self._device_id()):
                found.append(BadFrame.at(self.index, int(clips[n]), int(numbers[n]), error))
            if found:
                break
        return self.bad_frames.learn(found) > 0

    def _device_id(self) -> int | None:
        return torch.cuda.current_device() if self.cfg.device == "cuda" else None

    def bytes_read(self) -> int | None:
        """Bytes the random-access source read in this process (None when its workers read them)."""
        if self.cfg.source == "index" and not self.cfg.parallel_source:
            return self._source.reader.bytes_read
        return None

    def close(self) -> None:
        self._held.clear()
        if self._pipe is not None:
            del self._pipe
            self._pipe = None
