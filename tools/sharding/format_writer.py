"""Writing clip shards (the format: pipeline/shard_format.py): the tar writer, the DALI index, the frame
table (pipeline/frame_table.py), the clips' decoder messages and the manifest, each written atomically."""

from __future__ import annotations

import json
import os
import tarfile
import zlib
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.frame_table import CLIP_DTYPE, encode_frame_table
from pipeline.jpeg_check import jpeg_problem
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
    ClipWarnings,
    Manifest,
    frame_table_path_for,
    index_path_for,
    is_valid_key,
    warnings_path_for,
)
from pipeline.shard_reader import grouped_members
from siammae_common.atomic import AtomicFile, atomic_write, write_text_atomic


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


# ----------------------------------------------------------------------------------------------- frame table

class FrameTableBuilder:
    """Collects a shard's clips, in tar order, into its frame table: byte positions, a CRC-32 per frame,
    and the frames whose bytes fail the JPEG check (`pipeline.jpeg_check`), unless the caller has already
    decoded them (make_shards checks every JPEG it writes)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, int, int, int, int, int]] = []
        self.keys: list[str] = []
        self.offsets: list[np.ndarray] = []
        self.crc: list[np.ndarray] = []
        self.bad: list[tuple[int, int, str]] = []
        self._entries = 0

    def add(self, key: str, data_offset: int, meta_offset: int, meta_size: int, offsets: np.ndarray,
            frames: Sequence[bytes], height: int, width: int, checked: bool) -> None:
        """One clip: where its .frames and .json data start in the tar, its offsets [n+1], its frames."""
        clip = len(self.keys)
        crc = np.zeros(len(frames) + 1, np.uint32)
        crc[:-1] = [zlib.crc32(f) for f in frames]
        if not checked:
            self.bad += [(clip, i, why) for i, f in enumerate(frames) if (why := jpeg_problem(f, height, width))]
        self.records.append((data_offset, meta_offset, self._entries, len(frames), meta_size, height, width))
        self.keys.append(key)
        self.offsets.append(np.asarray(offsets, np.uint32))
        self.crc.append(crc)
        self._entries += len(frames) + 1

    def encode(self, tar_bytes: int) -> bytes:
        """The table for a tar of `tar_bytes` bytes."""
        empty = np.zeros(0, np.uint32)
        return encode_frame_table(tar_bytes, np.array(self.records, dtype=CLIP_DTYPE), self.keys,
                                  np.concatenate(self.offsets or [empty]), np.concatenate(self.crc or [empty]),
                                  self.bad)

    def write(self, tar_path: Path) -> Path:
        """Write the table of `tar_path` (as it is on disk now) beside it, atomically."""
        path = frame_table_path_for(tar_path)
        with atomic_write(path) as f:
            f.write(self.encode(tar_path.stat().st_size))
        return path


# ----------------------------------------------------------------------------------------------- tar

class ShardWriter:
    """Writes one shard: clips go to a temp file of this process (`.<tar>.PID.HEX.tmp`); `close()` renames
    it and writes the DALI index, the frame table and, if any clip printed decoder messages, the shard's
    `.warnings.jsonl`.

    Tars are reproducible (mtime 0, uid/gid 0, USTAR), so the same clips give the same bytes.
    """

    def __init__(self, tar_path: str | os.PathLike) -> None:
        self.path = Path(tar_path)
        self._file = AtomicFile(self.path)       # a rerun removes what an interrupted one left (writer.py)
        self._tar = tarfile.open(fileobj=self._file.file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self.clips = 0
        self.frames = 0
        self.keys: list[str] = []
        self.table = FrameTableBuilder()
        self.warnings: list[ClipWarnings] = []

    @property
    def tmp_path(self) -> Path:
        """Where the unfinished shard is written."""
        return self._file.temp

    @property
    def warned(self) -> int:
        """Clips of this shard whose decoding printed messages."""
        return len(self.warnings)

    def add(self, key: str, frames: Sequence[bytes], meta: dict[str, Any],
            pts: Sequence[float] | np.ndarray | None = None, *, checked: bool = False,
            warnings: ClipWarnings | None = None) -> None:
        """Append one clip (JPEG byte strings in order, their times in seconds [n] if known); meta is stored
        as given plus key and n_frames. checked: the caller decoded every frame already (else the frame
        table records those that fail the JPEG check); warnings: the clip's decoder messages."""
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
        at = {ext: self._add_member(f"{key}.{ext}", members[ext]) for ext in EXTENSIONS if ext in members}
        self.table.add(key, at[FRAMES_EXT], at[META_EXT], len(members[META_EXT]), offsets, frames,
                       int(meta["height"]), int(meta["width"]), checked)
        if warnings is not None:
            self.warnings.append(warnings)
        self.clips += 1
        self.frames += len(frames)
        self.keys.append(key)

    def _add_member(self, name: str, data: bytes) -> int:
        """Append one tar member; returns where its data starts in the tar."""
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uname = info.gname = ""
        self._tar.addfile(info, BytesIO(data))
        return self._tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE

    def close(self) -> int:
        """Finish the tar, rename it into place, write its index, frame table and the clips' decoder
        messages; returns the tar's size in bytes."""
        self._tar.close()
        self._file.commit()
        write_dali_index(self.path, index_path_for(self.path))
        self.table.write(self.path)
        if self.warnings:
            write_text_atomic(warnings_path_for(self.path), "".join(json.dumps(w.to_json()) + "\n"
                                                                     for w in self.warnings))
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
