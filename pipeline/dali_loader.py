"""The main loader: DALI decodes and augments pairs whose bytes come from the random-access source
(`dali_source.PairSource`); batches come out as torch tensors.

Bad frames: the source replaces pairs that read a frame changed since the shard was written or known to
be bad (no pipeline restart); a frame that passes that but fails DALI's decoder fails its whole batch, so
the loader decodes that batch's frames one by one (`dali_decode_check`), records the culprits as known
bad and rebuilds the pipeline at that very batch. Only bad data counts as bad data: a failure that the
one-by-one decode does not reproduce, one it reproduces on every frame, and any CUDA or out-of-memory
error is raised as it came, and the ledger is left as it was. In the normal case the pipeline is built once and runs across epochs: an epoch is cut
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
from pipeline.dali_decode_check import decoder_failures, is_resource_error
from pipeline.dali_graph import GraphSpec, build_pipeline
from pipeline.dali_source import DEBUG_COLUMNS, PairSource
from pipeline.dataset import ShardDataset
from pipeline.epoch_position import EpochPosition
from pipeline.frame_index import FrameIndex
from pipeline.sampling import EpochPlans


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

    def __init__(self, cfg: LoaderConfig, data: ShardDataset | None = None) -> None:
        self.cfg = cfg
        self.data = data if data is not None else ShardDataset.open(cfg.shards)
        self.plans = EpochPlans(self.data.index, cfg.sampling, cfg.plan_key, cfg.batch_size, cfg.batches_per_step)
        clips = self.data.clips
        self.spec = dali_graph_spec(cfg, (int(clips.height.max()), int(clips.width.max())))
        self.finish = FrameFinisher(cfg.device, cfg.dtype, cfg.normalize_in_torch)
        self._held: deque[Any] = deque(maxlen=HELD_BATCHES if cfg.device == "cuda" else 0)
        self.bad_frames = BadFrameLedger(cfg.bad_frame_limit, cfg.bad_frame_log, cfg.rank)
        self.pipeline_builds = 0
        self._pipe: Any = None
        self._source: PairSource | None = None
        self._next_batch = -1                               # global batch the pipe delivers next
        self._batches = self.plans.batches_per_epoch

    @property
    def index(self) -> FrameIndex:
        return self.data.index

    @property
    def pairs_per_epoch(self) -> int:
        """Pairs of this rank's epoch plan (the last batch wraps to the epoch's start to fill up)."""
        return self.plans.pairs_per_epoch

    def _new_source(self, start_batch: int) -> PairSource:
        """A byte source starting at global batch `start_batch` that knows the frames found bad so far."""
        known = self.bad_frames.known_codes(self.data.index)
        data = self.data.knowing(known) if known != self.data.decoder_bad else self.data
        return PairSource(data, self.plans, start_batch)

    def _build(self, start_batch: int) -> None:
        """A pipeline whose first batch is global batch `start_batch`."""
        self.close()
        cfg = self.cfg
        self._source = self._new_source(start_batch)
        self._pipe = build_pipeline(self._source, self.spec, cfg.batch_size, parallel=cfg.parallel_source,
                                    seed=cfg.seed, device_id=self._device_id(), py_start_method=cfg.source_start)
        if not self._pipe.exec_dynamic:         # dali_to_torch's zero-copy hand-over relies on it
            raise RuntimeError("the DALI pipeline does not run the dynamic executor (exec_dynamic)")
        self.pipeline_builds += 1
        self._next_batch = start_batch

    def __iter__(self) -> Iterator[PairBatch]:
        batches = self._pass_batches()
        start = batches.start
        if self._pipe is None or self._next_batch != start:
            self._build(start)
        for g in batches:
            outputs = self._run(g)
            self._held.append(outputs)
            f1, f2, meta = outputs
            index = None
            if self.cfg.debug_indices:
                key = self.data.index.key
                index = [(key(c), i, j) for c, i, j in meta[:, DEBUG_COLUMNS][:, :3].tolist()]
            yield PairBatch(self.finish(dali_to_torch(f1)), self.finish(dali_to_torch(f2)), index)
        self.epoch += 1

    def _run(self, g: int) -> tuple[Any, Any, np.ndarray]:
        """Global batch g: (f1, f2, meta [B, 11]); restarts the pipeline at g after a decoder failure that
        bad frames explain; any other failure is raised as it came."""
        while True:
            try:
                f1, f2, meta = self._pipe.run()
            except Exception as exc:           # DALI raises RuntimeError for the whole batch
                if is_resource_error(exc) or not self._learn_decoder_failures(g):
                    raise
                self._build(g)
                continue
            self._next_batch = g + 1
            meta = np.asarray(meta.as_tensor())
            if meta[:, DEBUG_COLUMNS][:, 3].any():
                epoch, _, replacements = self._source.resolve(g)
                self.bad_frames.record(epoch, replacements, self.pairs_per_epoch)
            return f1, f2, meta

    def _learn_decoder_failures(self, g: int) -> bool:
        """Decode the frames of batch g (and of the batches DALI may have prefetched after it) one by one;
        record those the decoder fails on. Returns whether any was found. A batch whose every frame fails
        alone is no evidence of bad data (the decoder itself fails): nothing is recorded then."""
        source = self._source
        for batch in range(g, g + self.cfg.decoder.prefetch_queue_depth + 1):
            epoch, sources, _ = source.resolve(batch)
            p = source.plans.plan(epoch).take(sources)
            clips, numbers, frames, _ = source.read_pairs(p)
            anchors = np.tile(np.ascontiguousarray(p.crop[:, [1, 0]], dtype=np.int32), (2, 1))
            shapes = np.tile(np.ascontiguousarray(p.crop[:, [3, 2]], dtype=np.int32), (2, 1))
            failed = decoder_failures(frames, anchors, shapes, self.spec, self._device_id())
            if len(failed) == len(frames) > 1:
                return False
            if failed:
                index = self.data.index
                found = [BadFrame.at(index, int(clips[n]), int(numbers[n]), error) for n, error in failed]
                return self.bad_frames.learn(found) > 0
        return False

    def _device_id(self) -> int | None:
        # The GPU this process trains on (torchrun's LOCAL_RANK, set by the trainer), not the global rank,
        # which exceeds the device count on every node after the first.
        return torch.cuda.current_device() if self.cfg.device == "cuda" else None

    def bytes_read(self) -> int | None:
        """Bytes the random-access source read in this process (None when its workers read them)."""
        if self._source is None or self.cfg.parallel_source:
            return None
        return self._source.data.reader.bytes_read

    def close(self) -> None:
        self._held.clear()
        if self._pipe is not None:
            del self._pipe
            self._pipe = None
