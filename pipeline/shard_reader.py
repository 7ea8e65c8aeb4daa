"""Reading clip shards (the format: pipeline/shard_format.py): clips, per-clip frame tables for
random access, DALI index keys, and the manifest."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.manifest_checks import duplicated_shard
from pipeline.shard_format import (
    DALI_INDEX_VERSION,
    EXTENSIONS,
    FRAMES_EXT,
    MANIFEST_NAME,
    META_EXT,
    OFFSETS_DTYPE,
    OFFSETS_EXT,
    PTS_DTYPE,
    PTS_EXT,
    REQUIRED_EXTENSIONS,
    ClipWarnings,
    Manifest,
    ShardError,
    ShardInfo,
    split_member_name,
    warnings_path_for,
)


def decode_offsets(data: bytes) -> np.ndarray:
    """The `.offsets` member -> int64 array [n+1]."""
    if len(data) % OFFSETS_DTYPE.itemsize or len(data) < OFFSETS_DTYPE.itemsize:
        raise ValueError(f"offsets member has {len(data)} bytes, not a positive multiple of 4")
    return np.frombuffer(data, dtype=OFFSETS_DTYPE).astype(np.int64)


def decode_pts(data: bytes, n_frames: int) -> np.ndarray:
    """The `.pts` member -> float64 seconds [n_frames]; checks it has one time per frame."""
    if len(data) != n_frames * PTS_DTYPE.itemsize:
        raise ValueError(f"pts member has {len(data)} bytes, expected {n_frames} x {PTS_DTYPE.itemsize}")
    return np.frombuffer(data, dtype=PTS_DTYPE).astype(np.float64)


@dataclass(frozen=True)
class Clip:
    """One sample read back from a shard."""

    key: str
    frames_bytes: bytes
    offsets: np.ndarray            # int64 [n_frames + 1]
    meta: dict[str, Any]
    pts: np.ndarray | None = None  # float64 [n_frames] presentation times in seconds; None in version 1

    @property
    def n_frames(self) -> int:
        return len(self.offsets) - 1

    def frame(self, i: int) -> bytes:
        """The JPEG bytes of frame i (negative i counts from the end)."""
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError(f"{self.key}: frame {i} out of range (clip has {self.n_frames} frames)")
        return self.frames_bytes[self.offsets[i]:self.offsets[i + 1]]


@dataclass(frozen=True)
class ClipLocation:
    """Where one clip's frames lie inside a tar, for random access (pread) of single frames."""

    key: str
    frames_data_offset: int        # absolute byte offset of the .frames member's data in the tar
    offsets: np.ndarray            # int64 [n_frames + 1], relative to frames_data_offset
    n_frames: int
    meta: dict[str, Any]

    def frame_range(self, i: int) -> tuple[int, int]:
        """(absolute start, length) of frame i's JPEG in the tar file."""
        start = int(self.offsets[i])
        return self.frames_data_offset + start, int(self.offsets[i + 1]) - start


def grouped_members(tar: tarfile.TarFile, path: Path) -> Iterator[tuple[str, dict[str, tarfile.TarInfo]]]:
    """Yield (key, {ext: TarInfo}) per sample, in tar order; samples are contiguous runs of one key."""
    key: str | None = None
    group: dict[str, tarfile.TarInfo] = {}
    for info in tar:
        if not info.isfile() or info.name.rpartition("/")[2].startswith("."):
            continue
        k, ext = split_member_name(info.name)
        if k != key:
            if key is not None:
                yield key, group
            key, group = k, {}
        group[ext] = info
    if key is not None:
        yield key, group


def check_sample(path: Path, key: str, group: dict[str, tarfile.TarInfo]) -> None:
    """Raise ValueError naming the shard and sample if a member every version has is missing."""
    missing = [e for e in REQUIRED_EXTENSIONS if e not in group]
    if missing:
        raise ValueError(f"{path}: sample {key!r} lacks member(s) {', '.join('.' + m for m in missing)}")


def iter_clips(tar_path: str | os.PathLike) -> Iterator[Clip]:
    """Every clip of one shard, in stored order, read with plain `tarfile`."""
    path = Path(tar_path)
    with tarfile.open(path, "r:") as tar:
        for key, group in grouped_members(tar, path):
            check_sample(path, key, group)
            data = {ext: tar.extractfile(group[ext]).read() for ext in EXTENSIONS if ext in group}
            offsets = decode_offsets(data[OFFSETS_EXT])
            pts = decode_pts(data[PTS_EXT], len(offsets) - 1) if PTS_EXT in data else None
            yield Clip(key, data[FRAMES_EXT], offsets, json.loads(data[META_EXT]), pts)


def clip_frame_table(tar_path: str | os.PathLike) -> list[ClipLocation]:
    """Per clip of one shard: the absolute offset of its .frames data and its frame offsets.

    Reads only the small members, so a random-access reader can later pread exactly two frames.
    """
    path = Path(tar_path)
    table = []
    with tarfile.open(path, "r:") as tar:
        for key, group in grouped_members(tar, path):
            check_sample(path, key, group)
            offsets = decode_offsets(tar.extractfile(group[OFFSETS_EXT]).read())
            meta = json.loads(tar.extractfile(group[META_EXT]).read())
            if offsets[-1] != group[FRAMES_EXT].size:
                raise ValueError(f"{path}: {key}.offsets ends at {offsets[-1]}, "
                                 f".frames has {group[FRAMES_EXT].size} bytes")
            table.append(ClipLocation(key, group[FRAMES_EXT].offset_data, offsets, len(offsets) - 1, meta))
    return table


# ----------------------------------------------------------------------------------------------- index, manifest

def read_index_keys(idx_path: str | os.PathLike) -> list[str]:
    """Sample keys listed in a DALI v1.2 index, in order (cheap: no tar access)."""
    lines = Path(idx_path).read_text().splitlines()
    if not lines or not lines[0].startswith(DALI_INDEX_VERSION + " "):
        raise ValueError(f"{idx_path}: not a DALI {DALI_INDEX_VERSION} index")
    keys = []
    for line in lines[1:]:
        fields = line.split()
        if fields:
            keys.append(split_member_name(fields[3])[0])
    return keys



def read_manifest(root: str | os.PathLike) -> Manifest:
    """Read and validate `root/manifest.json` (or a manifest file given directly): the one check of a
    manifest. Raises ShardError with one line naming the folder or file and the problem."""
    path = Path(root)
    if path.is_dir():
        path = path / MANIFEST_NAME
    elif path.suffix != ".json":
        raise ShardError(f"{path}: no such directory")
    if not path.is_file():
        raise ShardError(f"{path.parent}: no {path.name} (make the shards with tools/make_shards.py)")
    try:
        manifest = Manifest.from_json(json.loads(path.read_text()), path.parent)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:   # not JSON, fields missing or mistyped
        raise ShardError(f"{path}: not a valid shard manifest ({type(exc).__name__}: {exc})") from None
    twice = duplicated_shard(manifest, path.parent)
    if twice is not None:
        raise ShardError(twice)
    return manifest


def list_shards(root: str | os.PathLike) -> list[ShardInfo]:
    """The shards of a folder, in manifest order (tar path, index path, clips, frames, bytes)."""
    return read_manifest(root).shards


def read_clip_warnings(manifest: Manifest) -> list[ClipWarnings]:
    """Every kept clip whose decoding printed messages: the shards' .warnings.jsonl files, then what an
    older manifest listed inline."""
    out: list[ClipWarnings] = []
    for shard in manifest.shards:
        path = warnings_path_for(shard.tar)
        if shard.warned and path.is_file():
            out += [ClipWarnings.from_json(json.loads(line)) for line in path.read_text().splitlines() if line]
    return out + list(manifest.warnings)
