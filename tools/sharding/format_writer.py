"""Writing clip shards (the format: pipeline/shard_format.py): the tar writer, the DALI index and the
manifest, each written atomically."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.shard_format import (
    DALI_INDEX_VERSION,
    EXTENSIONS,
    FRAMES_EXT,
    MAX_KEY_LENGTH,
    META_EXT,
    OFFSETS_DTYPE,
    OFFSETS_EXT,
    PTS_DTYPE,
    PTS_EXT,
    Manifest,
    index_path_for,
    is_valid_key,
)
from pipeline.shard_reader import grouped_members
from siammae_common.atomic import AtomicFile, write_text_atomic


def encode_offsets(offsets: Sequence[int] | np.ndarray) -> bytes:
    """n+1 byte offsets -> the `.offsets` member (little-endian uint32). Must start at 0 and not decrease."""
    arr = np.asarray(offsets, dtype=np.int64)
    if arr.ndim != 1 or arr.size < 1 or arr[0] != 0:
        raise ValueError("offsets must be a 1-D sequence starting at 0")
    if np.any(np.diff(arr) < 0) or arr[-1] > np.iinfo(np.uint32).max:
        raise ValueError("offsets must be non-decreasing and below 2**32")
    return arr.astype(OFFSETS_DTYPE).tobytes()


def encode_pts(pts: Sequence[float] | np.ndarray) -> bytes:
    """Frame times in seconds [n] -> the `.pts` member (little-endian float64)."""
    return np.asarray(pts, dtype=np.float64).astype(PTS_DTYPE).tobytes()


def join_frames(frames: Sequence[bytes]) -> tuple[bytes, np.ndarray]:
    """JPEG byte strings -> (the `.frames` blob, offsets [n+1])."""
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(f) for f in frames])
    return b"".join(frames), offsets


# ----------------------------------------------------------------------------------------------- tar

class ShardWriter:
    """Writes one shard: clips go to a temp file of this process (`.<tar>.PID.HEX.tmp`); `close()` renames
    it and writes the DALI index.

    Tars are reproducible (mtime 0, uid/gid 0, USTAR), so the same clips give the same bytes.
    """

    def __init__(self, tar_path: str | os.PathLike) -> None:
        self.path = Path(tar_path)
        self._file = AtomicFile(self.path)       # a rerun removes what an interrupted one left (writer.py)
        self._tar = tarfile.open(fileobj=self._file.file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self.clips = 0
        self.frames = 0
        self.keys: list[str] = []

    @property
    def tmp_path(self) -> Path:
        """Where the unfinished shard is written."""
        return self._file.temp

    def add(self, key: str, frames: Sequence[bytes], meta: dict[str, Any],
            pts: Sequence[float] | np.ndarray | None = None) -> None:
        """Append one clip (JPEG byte strings in order, their times in seconds [n] if known);
        meta is stored as given plus key and n_frames."""
        if not is_valid_key(key):
            raise ValueError(f"invalid clip key {key!r}: use at most {MAX_KEY_LENGTH} chars of [A-Za-z0-9_-]")
        if pts is not None and len(pts) != len(frames):
            raise ValueError(f"{key}: {len(pts)} timestamps for {len(frames)} frames")
        blob, offsets = join_frames(frames)
        meta = {**meta, "key": key, "n_frames": len(frames)}
        members = {FRAMES_EXT: blob, OFFSETS_EXT: encode_offsets(offsets),
                   META_EXT: json.dumps(meta, sort_keys=True).encode()}
        if pts is not None:
            members[PTS_EXT] = encode_pts(pts)
        for ext in (e for e in EXTENSIONS if e in members):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(members[ext]), 0, 0o644
            info.uname = info.gname = ""
            self._tar.addfile(info, BytesIO(members[ext]))
        self.clips += 1
        self.frames += len(frames)
        self.keys.append(key)

    def close(self) -> int:
        """Finish the tar, rename it into place, write its index; returns the tar's size in bytes."""
        self._tar.close()
        self._file.commit()
        write_dali_index(self.path, index_path_for(self.path))
        return self.path.stat().st_size

    def abort(self) -> None:
        """Drop the unfinished shard."""
        try:
            self._tar.close()
        finally:
            self._file.discard()


def write_shard(tar_path: str | os.PathLike, clips: Sequence[tuple[str, Sequence[bytes], dict[str, Any]]]) -> int:
    """Write a whole shard (+ index) from (key, frames, meta) triples; returns the tar size. Handy in tests."""
    writer = ShardWriter(tar_path)
    for key, frames, meta in clips:
        writer.add(key, frames, meta)
    return writer.close()


# ----------------------------------------------------------------------------------------------- DALI index, manifest

def dali_index_lines(tar_path: str | os.PathLike) -> list[str]:
    """The lines of a DALI v1.2 index for one tar: header, then per sample `<ext> <offset> <size> <name>`...

    `<offset>` is where the member's DATA starts (its 512-byte header ends there), as DALI's wds2idx writes
    it; DALI checks it is a multiple of 512 and returns the bytes from there.
    """
    path = Path(tar_path)
    samples = []
    with tarfile.open(path, "r:") as tar:
        for _, group in grouped_members(tar, path):
            samples.append(" ".join(f"{ext} {info.offset_data} {info.size} {info.name}"
                                    for ext, info in group.items()))
    return [f"{DALI_INDEX_VERSION} {len(samples)}", *samples]


def write_dali_index(tar_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> Path:
    """Write DALI's v1.2 index of `tar_path` (offsets are member data offsets, multiples of 512)."""
    idx = Path(idx_path) if idx_path is not None else index_path_for(tar_path)
    write_text_atomic(idx, "\n".join(dali_index_lines(tar_path)) + "\n")
    return idx


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """Write atomically (a temp file of this process + rename), so a reader never sees half a manifest,
    also when several processes (parts) write the same manifest at once."""
    path = Path(path)
    write_text_atomic(path, json.dumps(manifest.to_json(path.parent), indent=1) + "\n")
