"""Random access to single frames of the clip shards: a table of every frame's byte range in its tar,
loaded once, and a reader that `pread`s exactly the bytes of the frames asked for.

This is what keeps the bytes read per pair at the two frames' own JPEG bytes, instead of a whole clip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.shard_format import MANIFEST_NAME
from pipeline.shard_reader import clip_frame_table, list_shards


class ShardError(ValueError):
    """A shard that cannot be read as the manifest says (missing, truncated, inconsistent)."""


@dataclass(frozen=True)
class FrameIndex:
    """Every clip of a shard folder: where its frames lie and how big they are. Arrays are [C]."""

    tars: tuple[Path, ...]
    keys: tuple[str, ...]
    shard: np.ndarray          # [C] int32, index into tars
    data_offset: np.ndarray    # [C] int64, absolute offset of the clip's .frames data in its tar
    first_offset: np.ndarray   # [C] int64, where the clip's offsets start in `offsets`
    offsets: np.ndarray        # [sum(n_frames + 1)] int64, frame offsets relative to data_offset
    n_frames: np.ndarray       # [C] int64
    height: np.ndarray         # [C] int64
    width: np.ndarray          # [C] int64
    index_bytes: int           # bytes of tar headers and small members read to build the table
    metas: tuple[dict, ...]    # [C] each clip's .json (class, label, source, fps, ...)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def load(cls, root: str | os.PathLike) -> FrameIndex:
        """Read the frame table of every shard listed in `root/manifest.json`; raises ShardError."""
        try:
            shards = list_shards(root)
        except FileNotFoundError as exc:
            raise ShardError(str(exc)) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:   # not JSON, fields missing or mistyped
            raise ShardError(f"{manifest_path(root)}: not a valid shard manifest "
                             f"({type(exc).__name__}: {exc})") from exc
        if not shards:
            raise ShardError(f"{root}: the manifest lists no shards")
        keys, shard_ids, data_off, first, offs, n, h, w, metas = [], [], [], [], [], [], [], [], []
        pos, index_bytes = 0, 0
        for s_id, info in enumerate(shards):
            for loc in _checked_table(info.tar, info.clips):
                keys.append(loc.key)
                shard_ids.append(s_id)
                data_off.append(loc.frames_data_offset)
                first.append(pos)
                offs.append(loc.offsets)
                pos += len(loc.offsets)
                n.append(loc.n_frames)
                h.append(int(loc.meta["height"]))
                w.append(int(loc.meta["width"]))
                metas.append(loc.meta)
                index_bytes += 3 * 512 + 4 * len(loc.offsets) + 256
        return cls(tuple(i.tar for i in shards), tuple(keys), np.asarray(shard_ids, np.int32),
                   np.asarray(data_off, np.int64), np.asarray(first, np.int64),
                   np.concatenate(offs).astype(np.int64), np.asarray(n, np.int64),
                   np.asarray(h, np.int64), np.asarray(w, np.int64), index_bytes, tuple(metas))

    def frame_ranges(self, clip: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Absolute (start, length) in the clip's tar of frame `frame` of clip `clip`; [N] -> [N], [N]."""
        k = self.first_offset[clip] + frame
        start = self.offsets[k]
        return self.data_offset[clip] + start, self.offsets[k + 1] - start

    def frame_bytes(self, clip: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """JPEG sizes of the given frames, [N] int64 (no I/O)."""
        return self.frame_ranges(clip, frame)[1]


def manifest_path(root: str | os.PathLike) -> Path:
    """The manifest file of a shard folder (or the file itself when given one)."""
    path = Path(root)
    return path / MANIFEST_NAME if path.is_dir() else path


def _checked_table(tar: Path, expected_clips: int) -> list:
    if not tar.is_file():
        raise ShardError(f"{tar}: shard listed in the manifest does not exist")
    size = tar.stat().st_size
    try:
        table = clip_frame_table(tar)
    except Exception as exc:  # tarfile raises several types on damaged archives
        raise ShardError(f"{tar}: cannot read shard ({type(exc).__name__}: {exc})") from exc
    for loc in table:
        end = loc.frames_data_offset + int(loc.offsets[-1])
        if end > size:
            raise ShardError(f"{tar}: truncated at byte {size}; clip {loc.key} needs bytes up to {end}")
        if loc.n_frames < 1:
            raise ShardError(f"{tar}: clip {loc.key} has no frames")
    if len(table) != expected_clips:
        raise ShardError(f"{tar}: holds {len(table)} readable clips, the manifest says {expected_clips} "
                         f"(truncated or rewritten shard?)")
    return table


class FrameReader:
    """Reads single frames by `pread`; file descriptors are opened lazily per process (fork-safe)."""

    def __init__(self, index: FrameIndex) -> None:
        self.index = index
        self._fds: dict[int, int] = {}
        self._pid = -1
        self.bytes_read = 0

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():          # after a fork, never share the parent's descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.index.tars[shard], os.O_RDONLY)
        return fd

    def read(self, clip: np.ndarray, frame: np.ndarray) -> list[np.ndarray]:
        """The JPEG bytes of each (clip, frame), as uint8 arrays; [N], [N] -> N arrays."""
        return [np.frombuffer(data, dtype=np.uint8) for data in self.read_bytes(clip, frame)]

    def read_bytes(self, clip: np.ndarray, frame: np.ndarray) -> list[bytes]:
        """The JPEG bytes of each (clip, frame); [N], [N] -> N byte strings."""
        start, length = self.index.frame_ranges(clip, frame)
        shards = self.index.shard[clip]
        out = []
        for s, a, n in zip(shards.tolist(), start.tolist(), length.tolist()):
            data = os.pread(self._fd(s), n, a)
            if len(data) != n:
                raise ShardError(f"{self.index.tars[s]}: truncated at byte {a + len(data)} "
                                 f"(wanted {n} bytes at {a})")
            out.append(data)
        self.bytes_read += int(length.sum())
        return out

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __getstate__(self) -> dict:
        return {"index": self.index, "_fds": {}, "_pid": -1, "bytes_read": 0}
