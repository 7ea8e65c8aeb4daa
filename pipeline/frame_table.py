"""The per-shard frame table: where every frame of a shard lies in its tar, with a CRC-32 of its bytes,
as one small binary file beside the tar (`<name>-NNNNNN.frametable`), written once with the shard.

Opening a shard folder reads only the clip section of each table (tens of bytes per clip); the frame
section (8 bytes per frame) is memory-mapped when a frame of that shard is read, so every rank and
every worker of a node shares one copy through the page cache and no process holds a per-frame array.

Layout (little-endian; every section starts at a multiple of 8 bytes):

    header    HEADER_DTYPE, padded to HEADER_BYTES: magic, version, key width, clips C, frame entries E,
              the tar's size in bytes, the number of frames found bad when the table was written, and the
              byte length of their reasons
    clips     CLIP_DTYPE [C]: absolute offsets of the clip's .frames and .json data in the tar, the
              position of its first entry, frame count, .json size, frame height and width
    keys      S<key width> [C]: the clip keys, NUL-padded
    offsets   <u4 [E]: per clip, n + 1 offsets relative to its .frames data (frame i = [off[i], off[i+1]))
    crc       <u4 [E]: CRC-32 of frame i's bytes at the clip's entry i (its last entry is 0)
    bad       BAD_DTYPE [B]: (clip, frame) of the frames whose bytes failed the JPEG check when written
    reasons   UTF-8 JSON list of B strings: why each of them failed
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"SIAMFTAB"
TABLE_VERSION = 1
HEADER_BYTES = 64
HEADER_DTYPE = np.dtype([("magic", "S8"), ("version", "<u4"), ("key_width", "<u4"), ("clips", "<u8"),
                         ("entries", "<u8"), ("tar_bytes", "<u8"), ("bad", "<u4"), ("reasons_bytes", "<u4")])
CLIP_DTYPE = np.dtype([("data_offset", "<u8"), ("meta_offset", "<u8"), ("first", "<u8"), ("n_frames", "<u4"),
                       ("meta_size", "<u4"), ("height", "<u4"), ("width", "<u4")])
ENTRY_DTYPE = np.dtype("<u4")
BAD_DTYPE = np.dtype([("clip", "<u4"), ("frame", "<u4")])


class FrameTableError(ValueError):
    """A frame table that is missing, of another version, or does not match its shard."""


def _aligned(n: int) -> int:
    return (n + 7) // 8 * 8


@dataclass(frozen=True)
class TableLayout:
    """Byte positions of a table's sections, from its header alone."""

    clips: int
    key_width: int
    entries: int
    bad: int
    reasons_bytes: int

    @property
    def keys_at(self) -> int:
        return HEADER_BYTES + _aligned(self.clips * CLIP_DTYPE.itemsize)

    @property
    def offsets_at(self) -> int:
        return self.keys_at + _aligned(self.clips * self.key_width)

    @property
    def crc_at(self) -> int:
        return self.offsets_at + _aligned(self.entries * ENTRY_DTYPE.itemsize)

    @property
    def bad_at(self) -> int:
        return self.crc_at + _aligned(self.entries * ENTRY_DTYPE.itemsize)

    @property
    def reasons_at(self) -> int:
        return self.bad_at + self.bad * BAD_DTYPE.itemsize

    @property
    def size(self) -> int:
        return self.reasons_at + self.reasons_bytes


def encode_frame_table(tar_bytes: int, clips: np.ndarray, keys: list[str], offsets: np.ndarray, crc: np.ndarray,
                       bad: list[tuple[int, int, str]]) -> bytes:
    """The table file's bytes. clips: CLIP_DTYPE [C]; offsets, crc: [E]; bad: (clip, frame, reason)."""
    key_width = max([len(k) for k in keys] + [1])
    reasons = json.dumps([r for _, _, r in bad]).encode() if bad else b""
    layout = TableLayout(len(clips), key_width, len(offsets), len(bad), len(reasons))
    out = bytearray(layout.size)
    header = np.zeros(1, HEADER_DTYPE)
    header[0] = (MAGIC, TABLE_VERSION, key_width, len(clips), len(offsets), tar_bytes, len(bad), len(reasons))
    out[:HEADER_DTYPE.itemsize] = header.tobytes()
    sections = ((HEADER_BYTES, np.asarray(clips, CLIP_DTYPE)),
                (layout.keys_at, np.array([k.encode() for k in keys], dtype=f"S{key_width}")),
                (layout.offsets_at, np.asarray(offsets, ENTRY_DTYPE)), (layout.crc_at, np.asarray(crc, ENTRY_DTYPE)),
                (layout.bad_at, np.array([(c, f) for c, f, _ in bad], dtype=BAD_DTYPE)))
    for at, arr in sections:
        raw = arr.tobytes()
        out[at:at + len(raw)] = raw
    out[layout.reasons_at:] = reasons
    return bytes(out)


@dataclass(frozen=True)
class TableHead:
    """What opening a shard reads of its table: the header, the clip records and the keys."""

    path: Path
    layout: TableLayout
    tar_bytes: int
    clips: np.ndarray          # CLIP_DTYPE [C]
    keys: np.ndarray           # S<key width> [C]


def read_bad_frames(path: Path, layout: TableLayout) -> list[tuple[int, int, str]]:
    """(clip, frame, reason) of the frames found bad when the table was written (reads only if any)."""
    if not layout.bad:
        return []
    with open(path, "rb") as f:
        f.seek(layout.bad_at)
        raw = f.read(layout.bad * BAD_DTYPE.itemsize + layout.reasons_bytes)
    cut = layout.bad * BAD_DTYPE.itemsize
    where = np.frombuffer(raw[:cut], BAD_DTYPE)
    reasons = json.loads(raw[cut:].decode())
    return [(int(c), int(f), str(r)) for (c, f), r in zip(where.tolist(), reasons)]


def read_table_head(path: Path) -> TableHead:
    """Read a table's header, clip records and keys (no frame entries); raises FrameTableError."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
            if len(raw) < HEADER_BYTES:
                raise FrameTableError(f"{path}: not a frame table (too short)")
            head = np.frombuffer(raw[:HEADER_DTYPE.itemsize], HEADER_DTYPE)[0]
            if head["magic"] != MAGIC:
                raise FrameTableError(f"{path}: not a frame table")
            if int(head["version"]) != TABLE_VERSION:
                raise FrameTableError(f"{path}: frame table version {int(head['version'])}, this code reads "
                                      f"{TABLE_VERSION}")
            layout = TableLayout(int(head["clips"]), int(head["key_width"]), int(head["entries"]),
                                 int(head["bad"]), int(head["reasons_bytes"]))
            size = os.fstat(f.fileno()).st_size
            if size != layout.size:
                raise FrameTableError(f"{path}: {size} bytes, its header describes {layout.size} (damaged table)")
            rest = f.read(layout.offsets_at - HEADER_BYTES)
    except OSError as exc:
        raise FrameTableError(f"{path}: cannot read frame table ({exc.strerror or exc})") from exc
    clips = np.frombuffer(rest, CLIP_DTYPE, count=layout.clips)
    keys = np.frombuffer(rest, f"S{layout.key_width}", count=layout.clips, offset=layout.keys_at - HEADER_BYTES)
    return TableHead(path, layout, int(head["tar_bytes"]), clips, keys)


class FrameEntries:
    """A whole table, memory-mapped: clip records and keys [C], frame offsets and CRCs [E]."""

    def __init__(self, path: Path, lay: TableLayout) -> None:
        # plain ndarray views of the map: np.memmap's own indexing costs more than the lookups themselves
        raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(lay.size,)).view(np.ndarray)
        self.clips = raw[HEADER_BYTES:HEADER_BYTES + lay.clips * CLIP_DTYPE.itemsize].view(CLIP_DTYPE)
        self.keys = raw[lay.keys_at:lay.keys_at + lay.clips * lay.key_width].view(f"S{lay.key_width}")
        self.offsets = raw[lay.offsets_at:lay.offsets_at + lay.entries * 4].view(ENTRY_DTYPE)
        self.crc = raw[lay.crc_at:lay.crc_at + lay.entries * 4].view(ENTRY_DTYPE)

    def lookup(self, local: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(absolute start in the tar, length, CRC-32) of frame `frame` of clip `local` of this shard; [N] each."""
        rec = self.clips[local]
        k = rec["first"].astype(np.int64) + frame
        a = self.offsets[k].astype(np.int64)
        return rec["data_offset"].astype(np.int64) + a, self.offsets[k + 1].astype(np.int64) - a, self.crc[k]
