"""Random access to single frames of a shard folder: the manifest plus each shard's frame table
(pipeline/frame_table.py), and a reader that `pread`s exactly the bytes of the frames asked for.

Opening reads the manifest once and the clip section of every table (no tar header is parsed); what
planning needs is kept as three small arrays per clip. A frame's byte range and CRC come from its shard's
memory-mapped table, so per-frame data is shared through the page cache by every process of a node.
Each process keeps at most `open_shard_limit()` tables mapped and tars open (least recently used ones are
let go), so no number of shards runs out of file descriptors.
"""

from __future__ import annotations

import os
import resource
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.frame_table import (
    FrameEntries,
    FrameTableError,
    TableHead,
    TableLayout,
    read_bad_frames,
    read_table_head,
)
from pipeline.manifest_checks import repair_command
from pipeline.shard_format import MANIFEST_NAME, Manifest, ShardError, ShardInfo, frame_table_path_for
from pipeline.shard_reader import read_manifest

__all__ = ["ClipTable", "FrameIndex", "FrameReader", "ShardError", "manifest_path"]

REINDEX_HINT = "python tools/make_shards.py --reindex {root}"


@dataclass(frozen=True)
class ClipTable:
    """What planning needs of every clip, [C] each: frame count, frame size, and its shard (or None)."""

    n_frames: np.ndarray
    height: np.ndarray
    width: np.ndarray
    shard: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.n_frames)


def open_shard_limit() -> int:
    """Shards one process keeps open at a time (a tar descriptor and a mapped table each, two descriptors):
    a quarter of its open-file limit, 16 to 4096. A rank's batches touch the shards of its share of an
    epoch (125 for Kinetics-400 on 8 ranks), which should fit, or every batch reopens some."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    return max(16, min(4096, soft // 4))


def manifest_path(root: str | os.PathLike) -> Path:
    """The manifest file of a shard folder (or the file itself when given one)."""
    path = Path(root)
    return path / MANIFEST_NAME if path.is_dir() else path


def _checked_head(root: Path, info: ShardInfo, repair: str) -> TableHead:
    """The shard's table head, checked cheaply against the tar on disk and the manifest (`repair`: the
    command that remakes the set, for a shard whose size is not the manifest's)."""
    if not info.tar.is_file():
        raise ShardError(f"{info.tar}: shard listed in the manifest does not exist")
    table = frame_table_path_for(info.tar)
    if not table.is_file():
        raise ShardError(f"{info.tar}: no frame table ({table.name}): the shards were written before frame "
                         f"tables existed; index them once with: {REINDEX_HINT.format(root=root)}")
    try:
        head = read_table_head(table)
    except FrameTableError as exc:
        raise ShardError(f"{exc}; rebuild it with: {REINDEX_HINT.format(root=root)}") from None
    size = info.tar.stat().st_size
    if size != head.tar_bytes or size != info.bytes:
        raise ShardError(f"{info.tar}: {size} bytes on disk, the manifest says {info.bytes} and its frame table "
                         f"{head.tar_bytes} (the shard changed after it was written); make the set again with: "
                         f"{repair}")
    if head.layout.clips != info.clips or int(head.clips["n_frames"].sum()) != info.frames:
        raise ShardError(f"{info.tar}: its frame table lists {head.layout.clips} clips, the manifest says "
                         f"{info.clips} (rewritten shard?); rebuild it with: {REINDEX_HINT.format(root=root)}")
    if head.layout.clips and int(head.clips["n_frames"].min()) < 1:
        raise ShardError(f"{info.tar}: a clip without frames")
    return head


class FrameIndex:
    """Every clip of a shard folder: [C] arrays for planning (`clips`), and per frame its byte range and
    CRC from the shard's table. Pickles as its folder (a worker opens it again: cheap), never as arrays."""

    def __init__(self, root: Path, tars: list[Path], tables: list[tuple[Path, TableLayout]], clips: ClipTable,
                 clip_start: np.ndarray) -> None:
        self.root = root
        self.tars = tuple(tars)
        self._tables = tables                   # (path, layout) per shard: clip records and keys stay on disk
        self.clips = clips
        self.clip_start = clip_start            # [S + 1] the first clip number of each shard
        self.table_bytes = sum(layout.size for _, layout in tables)
        self._entries: OrderedDict[int, FrameEntries] = OrderedDict()
        self._open_limit = open_shard_limit()
        # frames whose bytes failed the JPEG check when their table was written: {clip << 32 | frame: why}
        self.written_bad = self._written_bad()
        self._shard_of_tar = {t.name: s for s, t in enumerate(self.tars)}   # by name: the folder may move

    @classmethod
    def open(cls, root: str | os.PathLike, manifest: Manifest | None = None) -> FrameIndex:
        """Open a shard folder: its manifest (read once; or `manifest`, already read from it) and every
        shard's frame table, one shard at a time into arrays sized from the manifest (nothing per shard is
        kept but its table's layout); raises ShardError."""
        root = Path(root)
        manifest = manifest if manifest is not None else read_manifest(root)
        if manifest.clips < 1:
            raise ShardError(f"{manifest_path(root)}: the manifest lists no clips")
        folder = root if root.is_dir() else root.parent
        n = manifest.clips
        n_frames, height, width = np.empty(n, np.int32), np.empty(n, np.uint16), np.empty(n, np.uint16)
        counts = np.array([info.clips for info in manifest.shards], np.int64)
        clip_start = np.concatenate([[0], np.cumsum(counts)])
        tables = []
        repair = repair_command(manifest, folder)
        for s, info in enumerate(manifest.shards):
            head = _checked_head(folder, info, repair)
            if max(int(head.clips["height"].max(initial=0)), int(head.clips["width"].max(initial=0))) > 65535:
                raise ShardError(f"{info.tar}: frames larger than 65535 pixels")
            part = slice(clip_start[s], clip_start[s + 1])
            n_frames[part], height[part], width[part] = head.clips["n_frames"], head.clips["height"], head.clips["width"]
            tables.append((head.path, head.layout))
        shard = np.repeat(np.arange(len(tables), dtype=np.int32), counts)
        return cls(root, [info.tar for info in manifest.shards], tables,
                   ClipTable(n_frames, height, width, shard), clip_start)

    def __reduce__(self) -> tuple:
        return FrameIndex.open, (self.root,)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def n_frames(self) -> np.ndarray:
        return self.clips.n_frames

    @property
    def shard(self) -> np.ndarray:
        return self.clips.shard

    # -------------------------------------------------------------------------------------- per clip

    def _local(self, clip: int) -> tuple[int, int]:
        s = int(self.clips.shard[clip])
        return s, int(clip - self.clip_start[s])

    def key(self, clip: int) -> str:
        """The key of clip number `clip`."""
        s, c = self._local(clip)
        return self.entries(s).keys[c].decode()

    def keys(self) -> list[str]:
        """Every clip's key, in clip order (reads every table's keys: for tools and tests, not loading)."""
        return [k.decode() for s in range(len(self.tars)) for k in self.entries(s).keys.tolist()]

    def meta(self, clip: int) -> dict:
        """The clip's .json member (class, label, source, fps, ...), read from its tar."""
        import json

        s, c = self._local(clip)
        rec = self.entries(s).clips[c]
        with open(self.tars[s], "rb") as f:
            f.seek(int(rec["meta_offset"]))
            return json.loads(f.read(int(rec["meta_size"])))

    def clip_of(self, tar: str, key: str) -> int | None:
        """The clip number of `key` in shard `tar` (as a BadFrame names it), or None if absent."""
        s = self._shard_of_tar.get(Path(tar).name)
        if s is None:
            return None
        hits = np.flatnonzero(self.entries(s).keys == key.encode())
        return int(self.clip_start[s] + hits[0]) if len(hits) else None

    def _written_bad(self) -> dict[int, str]:
        out = {}
        for s, (path, layout) in enumerate(self._tables):
            for c, f, why in read_bad_frames(path, layout):
                out[int(self.clip_start[s] + c) << 32 | f] = why
        return out

    # -------------------------------------------------------------------------------------- per frame

    def entries(self, shard: int) -> FrameEntries:
        """Shard `shard`'s memory-mapped frame entries (least recently used ones are let go)."""
        entries = self._entries.get(shard)
        if entries is None:
            entries = self._entries[shard] = FrameEntries(*self._tables[shard])
            while len(self._entries) > self._open_limit:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(shard)
        return entries

    def frame_entries(self, clip: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(absolute start in its tar, length, CRC-32) of frame `frame` of clip `clip`; [N], [N] -> [N] x 3."""
        clip = np.asarray(clip, np.int64)
        frame = np.asarray(frame, np.int64)
        start = np.empty(len(clip), np.int64)
        length = np.empty(len(clip), np.int64)
        crc = np.empty(len(clip), np.uint32)
        for s, sel in _by_shard(self.clips.shard[clip]):
            start[sel], length[sel], crc[sel] = self.entries(s).lookup(clip[sel] - self.clip_start[s], frame[sel])
        return start, length, crc

    def frame_ranges(self, clip: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Absolute (start, length) in the clip's tar of frame `frame` of clip `clip`; [N] -> [N], [N]."""
        return self.frame_entries(clip, frame)[:2]

    def frame_bytes(self, clip: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """JPEG sizes of the given frames, [N] int64 (no I/O on the tars)."""
        return self.frame_entries(clip, frame)[1]


def _by_shard(shard: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(shard, positions holding it) for each shard in `shard` [N]."""
    order = np.argsort(shard, kind="stable")
    cuts = np.flatnonzero(np.diff(shard[order])) + 1
    return [(int(shard[sel[0]]), sel) for sel in np.split(order, cuts) if len(sel)]


class FrameReader:
    """Reads single frames by `pread`; descriptors are opened lazily per process (fork-safe), at most
    `open_shard_limit()` at a time. Pickles as its index's folder."""

    def __init__(self, index: FrameIndex) -> None:
        self.index = index
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._pid = -1
        self._open_limit = open_shard_limit()
        self.bytes_read = 0

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():          # after a fork, never share the parent's descriptors
            self._fds, self._pid = OrderedDict(), os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.index.tars[shard], os.O_RDONLY)
            if len(self._fds) > self._open_limit:
                os.close(self._fds.popitem(last=False)[1])
        return fd

    def read_checked(self, clip: np.ndarray, frame: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """The JPEG bytes of each (clip, frame) and the CRC-32 its table holds; [N], [N] -> N bytes, [N]."""
        clip = np.asarray(clip, np.int64)
        start, length, crc = self.index.frame_entries(clip, frame)
        out: list[bytes] = [b""] * len(clip)
        for s, sel in _by_shard(self.index.clips.shard[clip]):
            fd = self._fd(s)
            for k, a, n in zip(sel.tolist(), start[sel].tolist(), length[sel].tolist()):
                data = out[k] = os.pread(fd, n, a)
                if len(data) != n:
                    raise ShardError(f"{self.index.tars[s]}: truncated at byte {a + len(data)} "
                                     f"(wanted {n} bytes at {a})")
        self.bytes_read += int(length.sum())
        return out, crc

    def read_rows(self, clip: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The frames as the rows of one array, each padded to the longest: (rows [N, L] uint8, lengths [N],
        table CRC-32s [N]). Frame k is rows[k, :lengths[k]]; the padding is left uninitialised. One
        copy from the page cache per frame and no object per frame: what a batch of DALI input wants."""
        clip = np.asarray(clip, np.int64)
        start, length, crc = self.index.frame_entries(clip, frame)
        rows = np.empty((len(clip), int(length.max(initial=0))), np.uint8)
        for s, sel in _by_shard(self.index.clips.shard[clip]):
            fd = self._fd(s)
            for k, a, n in zip(sel.tolist(), start[sel].tolist(), length[sel].tolist()):
                got = os.preadv(fd, [rows[k, :n]], a)
                if got != n:
                    raise ShardError(f"{self.index.tars[s]}: truncated at byte {a + got} (wanted {n} bytes at {a})")
        self.bytes_read += int(length.sum())
        return rows, length, crc

    def read_bytes(self, clip: np.ndarray, frame: np.ndarray) -> list[bytes]:
        """The JPEG bytes of each (clip, frame); [N], [N] -> N byte strings."""
        return self.read_checked(clip, frame)[0]

    def read(self, clip: np.ndarray, frame: np.ndarray) -> list[np.ndarray]:
        """The JPEG bytes of each (clip, frame), as uint8 arrays; [N], [N] -> N arrays."""
        return [np.frombuffer(data, dtype=np.uint8) for data in self.read_bytes(clip, frame)]

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = OrderedDict()

    def __getstate__(self) -> dict:
        return {"index": self.index, "_fds": OrderedDict(), "_pid": -1, "_open_limit": open_shard_limit(),
                "bytes_read": 0}
