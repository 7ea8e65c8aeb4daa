"""The clip-shard format (version 2): names, byte layouts and the manifest, shared by the reader
(pipeline/shard_reader.py) and the writers (tools/sharding/format_writer.py).

One WebDataset sample = one clip, stored as these tar members, in this order:

    <key>.frames   the clip's frames as baseline JPEGs, concatenated in order
    <key>.offsets  n+1 little-endian uint32 byte offsets into .frames (frame i = frames[off[i]:off[i+1]])
    <key>.pts      n little-endian float64: frame i's presentation time in seconds (new in version 2)
    <key>.json     metadata: key, class_name, label, source, fps, vfr, n_frames, height, width

Version 1 shards (no `.pts`) still load: `Clip.pts` is then None.

Beside every `<name>-NNNNNN.tar` lie `<name>-NNNNNN.idx`, a DALI index (v1.2), `<name>-NNNNNN.frametable`,
the frame table the loaders open (pipeline/frame_table.py), and, when some of its clips printed decoder
messages, `<name>-NNNNNN.warnings.jsonl` (one `ClipWarnings` per line). The folder holds `manifest.json`
(see `Manifest`). Keys contain no dots (DALI and WebDataset split names at the first dot).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
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
FRAME_TABLE_SUFFIX = ".frametable"
WARNINGS_SUFFIX = ".warnings.jsonl"
OFFSETS_DTYPE = np.dtype("<u4")
PTS_DTYPE = np.dtype("<f8")
DALI_INDEX_VERSION = "v1.2"
MAX_KEY_LENGTH = 90                                  # + ".offsets" stays inside USTAR's 100-char names
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def is_valid_key(key: str) -> bool:
    """Keys are non-empty, at most MAX_KEY_LENGTH chars of [A-Za-z0-9_-] (no dots, no slashes)."""
    return len(key) <= MAX_KEY_LENGTH and bool(_KEY_RE.match(key))



def split_member_name(name: str) -> tuple[str, str]:
    """'dir/key.ext.more' -> ('dir/key', 'ext.more'): WebDataset's and DALI's first-dot rule."""
    head, _, base = name.rpartition("/")
    key, dot, ext = base.partition(".")
    if not dot:
        raise ValueError(f"tar member {name!r} has no extension")
    return (f"{head}/{key}" if head else key), ext



def index_path_for(tar_path: str | os.PathLike) -> Path:
    """`x/name-000003.tar` -> `x/name-000003.idx` (the name DALI's wds2idx uses)."""
    return Path(tar_path).with_suffix(".idx")


def frame_table_path_for(tar_path: str | os.PathLike) -> Path:
    """`x/name-000003.tar` -> `x/name-000003.frametable`."""
    return Path(tar_path).with_suffix(FRAME_TABLE_SUFFIX)


def warnings_path_for(tar_path: str | os.PathLike) -> Path:
    """`x/name-000003.tar` -> `x/name-000003.warnings.jsonl` (the shard's clips with decoder messages)."""
    return Path(tar_path).with_suffix(WARNINGS_SUFFIX)


class ShardError(ValueError):
    """A shard folder that cannot be read as its manifest says (missing, truncated, inconsistent)."""



# ----------------------------------------------------------------------------------------------- manifest

@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed in the manifest; paths are absolute once read."""

    tar: Path
    index: Path
    clips: int
    frames: int
    bytes: int
    warned: int = 0                # clips of this shard with decoder messages (in its .warnings.jsonl)


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

    def to_json(self) -> dict[str, Any]:
        """One line of a shard's .warnings.jsonl (the entry the manifest held before)."""
        return {"source": self.source, "key": self.key, "warnings": {"count": self.count, "first": list(self.first)}}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ClipWarnings:
        return cls(row["source"], row["key"], int(row["warnings"]["count"]), tuple(row["warnings"]["first"]))


@dataclass
class Manifest:
    """`manifest.json`: what a shard folder holds and how it was made. Decoder messages of kept clips live
    beside each shard (`warnings_path_for`); `warnings` holds only those a manifest written before that
    listed inline, kept as they were."""

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

    @property
    def clips_with_warnings(self) -> int:
        return sum(s.warned for s in self.shards) + len(self.warnings)

    def to_json(self, root: Path) -> dict[str, Any]:
        """The manifest as written: shard paths relative to `root` (the shard folder)."""
        def rel(p: Path) -> str:
            return os.path.relpath(p, root)
        return {
            "format": FORMAT_NAME, "format_version": self.format_version, "name": self.name,
            "complete": self.complete, "options": self.options, "classes": self.classes,
            "totals": {"shards": len(self.shards), "clips": self.clips, "frames": self.frames,
                       "bytes": sum(s.bytes for s in self.shards), "failures": len(self.failures),
                       "clips_with_warnings": self.clips_with_warnings},
            "shards": [{"tar": rel(s.tar), "index": rel(s.index), "clips": s.clips, "frames": s.frames,
                        "bytes": s.bytes, "clips_with_warnings": s.warned} for s in self.shards],
            "failures": [asdict(f) for f in self.failures],
            **({"clip_warnings": [w.to_json() for w in self.warnings]} if self.warnings else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> Manifest:
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"{root}: not a {FORMAT_NAME} manifest")
        if data.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"{root}: manifest format version {data.get('format_version')}, "
                             f"this code reads versions {', '.join(map(str, READABLE_VERSIONS))}")
        shards = [ShardInfo(root / s["tar"], root / s["index"], int(s["clips"]), int(s["frames"]),
                            int(s["bytes"]), int(s.get("clips_with_warnings", 0))) for s in data["shards"]]
        warnings = [ClipWarnings.from_json(w) for w in data.get("clip_warnings", [])]
        return cls(name=data["name"], options=data["options"], shards=shards,
                   failures=[Failure(**f) for f in data["failures"]], warnings=warnings,
                   classes=list(data.get("classes", [])), complete=bool(data["complete"]),
                   format_version=data["format_version"])

