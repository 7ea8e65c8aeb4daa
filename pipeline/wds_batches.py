"""The worker side of the fallback loader: one whole batch per call, from its global batch number.

For global batch g it takes the same plan positions as the DALI loader's byte source (`PairSource`:
same plan, same epoch cut, same ranks), `pread`s exactly the two JPEGs of each pair through the frame
index, checks them (CRC-32, known bad frames), decodes them with Pillow, applies the plan's crop and flip with the DALI
graph's resize (`pil_ops`), and writes the pair into the batch's uint8 tensors. A pair that reads a bad frame (the byte check, or Pillow's decoder)
is replaced by the first good candidate of `bad_frames.replace_pair`: the pair the DALI loader picks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from PIL.Image import Image

from pipeline.bad_frames import BadFrame, Replacement, replace_pair
from pipeline.config import PairSamplingConfig
from pipeline.dali_source import PairSource
from pipeline.frame_index import ShardError
from pipeline.pil_ops import crop_resize_flip_array, crop_resize_flip_linear, decode_jpeg
from pipeline.sampling import PairPlan


@dataclass
class MadeBatch:
    """Global batch g as a worker made it: frames [B, 3, S, S] uint8 (pinned by the DataLoader on a GPU
    machine), the plan positions delivered [B] (see PairSource.resolve) and the bytes read."""

    g: int
    f1: torch.Tensor
    f2: torch.Tensor
    sources: np.ndarray
    replacements: list[Replacement]
    bytes_read: int

    def pin_memory(self) -> MadeBatch:
        """The DataLoader's pin-memory thread calls this (pin_memory=True on a GPU machine): the frames move
        to page-locked memory, so the loader's copy to the GPU runs asynchronously."""
        return replace(self, f1=self.f1.pin_memory(), f2=self.f2.pin_memory())


@dataclass
class WorkerFailure:
    """An error a worker met, handed to the main process to be raised there as itself (one clear line,
    not wrapped in the DataLoader's traceback text)."""

    error: Exception


class BatchMaker:
    """Picklable callable g -> MadeBatch (or WorkerFailure), run in the DataLoader's worker processes."""

    def __init__(self, source: PairSource, sampling: PairSamplingConfig) -> None:
        self.size = sampling.crop_size
        # the DALI graph's resize (linear, no antialiasing) unless the sampling asks for antialiasing
        self.resize = crop_resize_flip_array if sampling.antialias else crop_resize_flip_linear
        self._pid = -1
        self.source = source

    def __call__(self, g: int) -> MadeBatch | WorkerFailure:
        try:
            return self.make(g)
        except (ShardError, OSError) as exc:
            return WorkerFailure(exc)

    def make(self, g: int) -> MadeBatch:
        """Read, check, decode and augment every pair of global batch g."""
        if self._pid != os.getpid():           # once per worker process: OpenCV on this worker's core only
            cv2.setNumThreads(1)
            self._pid = os.getpid()
        src = self.source
        reader = src.data.reader
        before = reader.bytes_read
        epoch, slots = src.plans.batch_slots(g)
        plan = src.plans.plan(epoch)
        p = plan.take(slots)
        _, _, data, crc = src.read_pairs(p)
        b = len(slots)
        out1 = torch.empty((len(slots), self.size, self.size, 3), dtype=torch.uint8)   # [B, S, S, 3]
        out2 = torch.empty_like(out1)
        rows1, rows2 = out1.numpy(), out2.numpy()              # the same memory, written pair by pair
        sources, replacements = slots.copy(), []
        for k, (clip, i, j) in enumerate(zip(p.clip.tolist(), p.i.tolist(), p.j.tolist())):
            images, bad = self.decode_pair(clip, i, j, [data[k], data[b + k]], crc[[k, b + k]])
            if bad:
                rep, images = self.replace(plan, epoch, int(slots[k]), bad)
                sources[k] = rep.source
                replacements.append(rep)
            crop, flip = plan.crop[sources[k]], bool(plan.flip[sources[k]])
            rows1[k] = self.resize(images[0], crop, flip, self.size)
            rows2[k] = self.resize(images[1], crop, flip, self.size)
        # [B, S, S, 3] -> [B, 3, S, S]: one copy per batch, so the batch crosses to the main process dense
        return MadeBatch(g, out1.permute(0, 3, 1, 2).contiguous(), out2.permute(0, 3, 1, 2).contiguous(),
                         sources, replacements, reader.bytes_read - before)

    def decode_pair(self, clip: int, i: int, j: int, data: list[bytes], crc: np.ndarray
                    ) -> tuple[list[Image], list[BadFrame]]:
        """Both frames decoded, or the bad ones: the shared check first (CRC-32, known bad frames), then
        Pillow's decoder. Running out of memory is the machine's failure, not the frame's: it is raised."""
        bad = self.source.data.checker.problems(clip, (i, j), data, crc)
        if bad:
            return [], bad
        images = []
        for frame, jpeg in ((i, data[0]), (j, data[1])):
            try:
                images.append(decode_jpeg(jpeg))
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 (Pillow raises many types on damaged data)
                bad.append(BadFrame.at(self.source.data.index, clip, frame, f"Pillow: {type(exc).__name__}: {exc}"))
        return ([] if bad else images), bad

    def replace(self, plan: PairPlan, epoch: int, slot: int, bad: list[BadFrame]) -> tuple[Replacement, list[Image]]:
        """The replacement of the pair at `slot` and its two decoded frames."""
        decoded: dict[int, list[Image]] = {}
        src = self.source

        def check(q: int) -> list[BadFrame]:
            clip, i, j = int(plan.clip[q]), int(plan.i[q]), int(plan.j[q])
            data, crc = src.data.read(np.array([clip, clip]), np.array([i, j]))
            decoded[q], problems = self.decode_pair(clip, i, j, data, crc)
            return problems

        key = src.plans.key
        rep = replace_pair(slot, bad, src.pairs_per_epoch, key.seed, epoch, key.rank, check)
        return rep, decoded[rep.source]
