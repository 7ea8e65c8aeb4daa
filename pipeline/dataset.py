"""A shard folder opened for loading: one object that planning, the byte sources and both loaders share.

    data = ShardDataset.open("shards/")                 # manifest once + every shard's frame table
    plans = EpochPlans(data.index, sampling, PlanKey(seed, 0, rank, world_size), batch_size)
    frames, crc = data.read(clips, frames)              # pread of exactly those frames
    data.checker.all_good(clips, frames, frames, crc)    # CRC-32 and known-bad frames

It pickles as its folder plus the frames a decoder found bad, so a worker process receives a path and
opens the folder itself (cheap), never a copy of the index.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.bad_frames import FrameChecker
from pipeline.frame_index import ClipTable, FrameIndex, FrameReader
from pipeline.shard_format import Manifest


class ShardDataset:
    """A shard folder's frame index, a frame reader, and the frames known to be bad: those the JPEG check
    rejected when the frame tables were written, plus `decoder_bad` ({clip << 32 | frame: why}: frames a
    decoder failed on since, as the loader's ledger knows them)."""

    def __init__(self, index: FrameIndex, decoder_bad: dict[int, str] | None = None) -> None:
        self.index = index
        self.reader = FrameReader(index)
        self.decoder_bad = dict(decoder_bad or {})
        self.checker = FrameChecker(index, {**index.written_bad, **self.decoder_bad})

    @classmethod
    def open(cls, root: str | os.PathLike, decoder_bad: dict[int, str] | None = None,
             manifest: Manifest | None = None) -> ShardDataset:
        """Open a shard folder (its `manifest` when the caller has read it already); raises ShardError with
        one line naming the file and the problem."""
        return cls(FrameIndex.open(root, manifest), decoder_bad)

    def knowing(self, decoder_bad: dict[int, str]) -> ShardDataset:
        """The same folder (the same index object) with these frames known bad to a decoder."""
        return ShardDataset(self.index, decoder_bad)

    def __reduce__(self) -> tuple:
        # the index pickles as its folder (FrameIndex.__reduce__), once, however many objects refer to it
        return ShardDataset, (self.index, self.decoder_bad)

    @property
    def root(self) -> Path:
        return self.index.root

    @property
    def clips(self) -> ClipTable:
        return self.index.clips

    def __len__(self) -> int:
        return len(self.index)

    def read(self, clip: np.ndarray, frame: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """The JPEG bytes of each (clip, frame) and the CRC-32 they were written with; [N] -> N bytes, [N]."""
        return self.reader.read_checked(clip, frame)

    def read_rows(self, clip: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same frames as the rows of one padded array: (rows [N, L] uint8, lengths [N], CRC-32s [N])."""
        return self.reader.read_rows(clip, frame)
