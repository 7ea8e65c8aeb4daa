"""The clip-shard format (version 2): names, byte layouts, and the readers and writers everyone shares.

One WebDataset sample = one clip, stored as these tar members, in this order:

    <key>.frames   the clip's frames as baseline JPEGs, concatenated in order
    <key>.offsets  n+1 little-endian uint32 byte offsets into .frames (frame i = frames[off[i]:off[i+1]])
    <key>.pts      n little-endian float64: frame i's presentation time in seconds (new in version 2)
    <key>.json     metadata: key, class_name, label, source, fps, vfr, n_frames, height, width

Version 1 shards (no `.pts`) still load: `Clip.pts` is then None.

Beside every `<name>-NNNNNN.tar` lies `<name>-NNNNNN.idx`, a DALI index (v1.2), and the folder holds
`manifest.json` (see `Manifest`). Keys contain no dots (DALI and WebDataset split names at the first dot).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "siammae-clip-shards"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FRAMES_EXT = "frames"
OFFSETS_EXT = "offsets"
PTS_EXT = "pts"
META_EXT = "json"
EXTENSIONS = (FRAMES_EXT, OFFSETS_EXT, PTS_EXT, META_EXT)   # member order inside a sample
REQUIRED_EXTENSIONS = (FRAMES_EXT, OFFSETS_EXT, META_EXT)   # every version has these
MANIFEST_NAME = "manifest.json"
OFFSETS_DTYPE = np.dtype("<u4")
PTS_DTYPE = np.dtype("<f8")
DALI_INDEX_VERSION = "v1.2"
MAX_KEY_LENGTH = 90                                  # + ".offsets" stays inside USTAR's 100-char names
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


# ----------------------------------------------------------------------------------------------- offsets

def encode_offsets(offsets: Sequence[int] | np.ndarray) -> bytes:
    """n+1 byte offsets -> the `.offsets` member (little-endian uint32). Must start at 0 and not decrease."""
    arr = np.asarray(offsets, dtype=np.int64)
    if arr.ndim != 1 or arr.size < 1 or arr[0] != 0:
        raise ValueError("offsets must be a 1-D sequence starting at 0")
    if np.any(np.diff(arr) < 0) or arr[-1] > np.iinfo(np.uint32).max:
        raise ValueError("offsets must be non-decreasing and below 2**32")
    return arr.astype(OFFSETS_DTYPE).tobytes()


def decode_offsets(data: bytes) -> np.ndarray:
    """The `.offsets` member -> int64 array [n+1]."""
    if len(data) % OFFSETS_DTYPE.itemsize or len(data) < OFFSETS_DTYPE.itemsize:
        raise ValueError(f"offsets member has {len(data)} bytes, not a positive multiple of 4")
    return np.frombuffer(data, dtype=OFFSETS_DTYPE).astype(np.int64)


def encode_pts(pts: Sequence[float] | np.ndarray) -> bytes:
    """Frame times in seconds [n] -> the `.pts` member (little-endian float64)."""
    return np.asarray(pts, dtype=np.float64).astype(PTS_DTYPE).tobytes()


def decode_pts(data: bytes, n_frames: int) -> np.ndarray:
    """The `.pts` member -> float64 seconds [n_frames]; checks it has one time per frame."""
    if len(data) != n_frames * PTS_DTYPE.itemsize:
        raise ValueError(f"pts member has {len(data)} bytes, expected {n_frames} x {PTS_DTYPE.itemsize}")
    return np.frombuffer(data, dtype=PTS_DTYPE).astype(np.float64)


def join_frames(frames: Sequence[bytes]) -> tuple[bytes, np.ndarray]:
    """JPEG byte strings -> (the `.frames` blob, offsets [n+1])."""
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(f) for f in frames])
    return b"".join(frames), offsets


def is_valid_key(key: str) -> bool:
    """Keys are non-empty, at most MAX_KEY_LENGTH chars of [A-Za-z0-9_-] (no dots, no slashes)."""
    return len(key) <= MAX_KEY_LENGTH and bool(_KEY_RE.match(key))


# ----------------------------------------------------------------------------------------------- clips

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


def split_member_name(name: str) -> tuple[str, str]:
    """'dir/key.ext.more' -> ('dir/key', 'ext.more'): WebDataset's and DALI's first-dot rule."""
    head, _, base = name.rpartition("/")
    key, dot, ext = base.partition(".")
    if not dot:
        raise ValueError(f"tar member {name!r} has no extension")
    return (f"{head}/{key}" if head else key), ext


def _grouped_members(tar: tarfile.TarFile, path: Path) -> Iterator[tuple[str, dict[str, tarfile.TarInfo]]]:
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


def _check_sample(path: Path, key: str, group: dict[str, tarfile.TarInfo]) -> None:
    missing = [e for e in REQUIRED_EXTENSIONS if e not in group]
    if missing:
        raise ValueError(f"{path}: sample {key!r} lacks member(s) {', '.join('.' + m for m in missing)}")


def iter_clips(tar_path: str | os.PathLike) -> Iterator[Clip]:
    """Every clip of one shard, in stored order, read with plain `tarfile`."""
    path = Path(tar_path)
    with tarfile.open(path, "r:") as tar:
        for key, group in _grouped_members(tar, path):
            _check_sample(path, key, group)
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
        for key, group in _grouped_members(tar, path):
            _check_sample(path, key, group)
            offsets = decode_offsets(tar.extractfile(group[OFFSETS_EXT]).read())
            meta = json.loads(tar.extractfile(group[META_EXT]).read())
            if offsets[-1] != group[FRAMES_EXT].size:
                raise ValueError(f"{path}: {key}.offsets ends at {offsets[-1]}, "
                                 f".frames has {group[FRAMES_EXT].size} bytes")
            table.append(ClipLocation(key, group[FRAMES_EXT].offset_data, offsets, len(offsets) - 1, meta))
    return table


# ----------------------------------------------------------------------------------------------- writing

class ShardWriter:
    """Writes one shard: clips go to `<tar>.tmp`; `close()` renames it and writes the DALI index.

    Tars are reproducible (mtime 0, uid/gid 0, USTAR), so the same clips give the same bytes.
    """

    def __init__(self, tar_path: str | os.PathLike) -> None:
        self.path = Path(tar_path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._tar = tarfile.open(self.tmp_path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self.clips = 0
        self.frames = 0
        self.keys: list[str] = []

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
        os.replace(self.tmp_path, self.path)
        write_dali_index(self.path, index_path_for(self.path))
        return self.path.stat().st_size

    def abort(self) -> None:
        """Drop the unfinished shard."""
        self._tar.close()
        self.tmp_path.unlink(missing_ok=True)


def write_shard(tar_path: str | os.PathLike, clips: Sequence[tuple[str, Sequence[bytes], dict[str, Any]]]) -> int:
    """Write a whole shard (+ index) from (key, frames, meta) triples; returns the tar size. Handy in tests."""
    writer = ShardWriter(tar_path)
    for key, frames, meta in clips:
        writer.add(key, frames, meta)
    return writer.close()


# ----------------------------------------------------------------------------------------------- DALI index

def index_path_for(tar_path: str | os.PathLike) -> Path:
    """`x/name-000003.tar` -> `x/name-000003.idx` (the name DALI's wds2idx uses)."""
    return Path(tar_path).with_suffix(".idx")


def dali_index_lines(tar_path: str | os.PathLike) -> list[str]:
    """The lines of a DALI v1.2 index for one tar: header, then per sample `<ext> <offset> <size> <name>`...

    `<offset>` is where the member's DATA starts (its 512-byte header ends there), as DALI's wds2idx writes
    it; DALI checks it is a multiple of 512 and returns the bytes from there.
    """
    path = Path(tar_path)
    samples = []
    with tarfile.open(path, "r:") as tar:
        for _, group in _grouped_members(tar, path):
            samples.append(" ".join(f"{ext} {info.offset_data} {info.size} {info.name}"
                                    for ext, info in group.items()))
    return [f"{DALI_INDEX_VERSION} {len(samples)}", *samples]


def write_dali_index(tar_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> Path:
    """Write DALI's v1.2 index of `tar_path` (offsets are member data offsets, multiples of 512)."""
    idx = Path(idx_path) if idx_path is not None else index_path_for(tar_path)
    tmp = idx.with_name(idx.name + ".tmp")
    tmp.write_text("\n".join(dali_index_lines(tar_path)) + "\n")
    os.replace(tmp, idx)
    return idx


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


# ----------------------------------------------------------------------------------------------- manifest

@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed in the manifest; paths are absolute once read."""

    tar: Path
    index: Path
    clips: int
    frames: int
    bytes: int


@dataclass(frozen=True)
class Failure:
    """An input that produced no clip, with the reason."""

    source: str
    reason: str


@dataclass(frozen=True)
class ClipWarnings:
    """A kept clip whose decoding printed messages: how many, and the first few."""

    source: str
    key: str
    count: int
    first: tuple[str, ...]


@dataclass
class Manifest:
    """`manifest.json`: what a shard folder holds and how it was made."""

    name: str
    options: dict[str, Any]
    shards: list[ShardInfo] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[ClipWarnings] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    complete: bool = False
    format_version: int = FORMAT_VERSION

    @property
    def clips(self) -> int:
        return sum(s.clips for s in self.shards)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.shards)

    def to_json(self, root: Path) -> dict[str, Any]:
        """The manifest as written: shard paths relative to `root` (the shard folder)."""
        def rel(p: Path) -> str:
            return os.path.relpath(p, root)
        return {
            "format": FORMAT_NAME, "format_version": self.format_version, "name": self.name,
            "complete": self.complete, "options": self.options, "classes": self.classes,
            "totals": {"shards": len(self.shards), "clips": self.clips, "frames": self.frames,
                       "bytes": sum(s.bytes for s in self.shards), "failures": len(self.failures),
                       "clips_with_warnings": len(self.warnings)},
            "shards": [{"tar": rel(s.tar), "index": rel(s.index), "clips": s.clips, "frames": s.frames,
                        "bytes": s.bytes} for s in self.shards],
            "failures": [asdict(f) for f in self.failures],
            "clip_warnings": [{"source": w.source, "key": w.key,
                               "warnings": {"count": w.count, "first": list(w.first)}} for w in self.warnings],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> Manifest:
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"{root}: not a {FORMAT_NAME} manifest")
        if data.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"{root}: manifest format version {data.get('format_version')}, "
                             f"this code reads versions {', '.join(map(str, READABLE_VERSIONS))}")
        shards = [ShardInfo(root / s["tar"], root / s["index"], int(s["clips"]), int(s["frames"]),
                            int(s["bytes"])) for s in data["shards"]]
        warnings = [ClipWarnings(w["source"], w["key"], int(w["warnings"]["count"]), tuple(w["warnings"]["first"]))
                    for w in data.get("clip_warnings", [])]
        return cls(name=data["name"], options=data["options"], shards=shards,
                   failures=[Failure(**f) for f in data["failures"]], warnings=warnings,
                   classes=list(data.get("classes", [])), complete=bool(data["complete"]),
                   format_version=data["format_version"])


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """Write atomically (a temp file of this process + rename), so a reader never sees half a manifest,
    also when several processes (parts) write the same manifest at once."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(manifest.to_json(path.parent), indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Read `root/manifest.json` (or a manifest file given directly)."""
    path = Path(root)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shard manifest (run tools/make_shards.py first)")
    return Manifest.from_json(json.loads(path.read_text()), path.parent)


def list_shards(root: str | os.PathLike) -> list[ShardInfo]:
    """The shards of a folder, in manifest order (tar path, index path, clips, frames, bytes)."""
    return read_manifest(root).shards
