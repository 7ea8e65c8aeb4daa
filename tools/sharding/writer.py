"""Writes decoded clips into numbered shards, keeps the manifest current, and resumes interrupted runs.

The manifest is rewritten (atomically) after every finished shard, so it always lists exactly the shards
that are complete on disk. A rerun keeps those, skips their clips and the recorded failures, and continues
with new shard numbers. With `--part K/N`, part K writes shard numbers K-1, K-1+N, ... and its own
`manifest-partK-of-N.json`; the part that finishes last merges them into `manifest.json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.shard_format import (
    MANIFEST_NAME,
    Failure,
    Manifest,
    ShardInfo,
    ShardWriter,
    read_index_keys,
    read_manifest,
    write_manifest,
)
from siammae_common.console import UserError


@dataclass(frozen=True)
class ShardLimit:
    """A shard is closed when it holds `max_clips` clips or at least `max_bytes` bytes."""

    max_bytes: int | None = None
    max_clips: int | None = None

    @staticmethod
    def parse(text: str) -> ShardLimit:
        """'1GB', '500MB', '256' (MB) or '100clips'."""
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(gb|mb|kb|clips?)?\s*", text.lower())
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"--shard-size {text!r}: use e.g. 1GB, 500MB or 100clips")
        value, unit = float(m.group(1)), m.group(2) or "mb"
        if unit.startswith("clip"):
            return ShardLimit(max_clips=max(1, int(value)))
        return ShardLimit(max_bytes=int(value * {"gb": 1e9, "mb": 1e6, "kb": 1e3}[unit]))


def manifest_path(out: Path, part: int, parts: int) -> Path:
    return out / (MANIFEST_NAME if parts == 1 else f"manifest-part{part}-of-{parts}.json")


class ShardSink:
    """Receives clips in order and turns them into shards + manifest."""

    def __init__(self, out: Path, name: str, options: dict[str, Any], classes: list[str], limit: ShardLimit,
                 part: int = 1, parts: int = 1) -> None:
        self.out, self.name, self.limit, self.part, self.parts = out, name, limit, part, parts
        self.path = manifest_path(out, part, parts)
        self.manifest = Manifest(name=name, options=options, classes=classes)
        self.done_keys: set[str] = set()
        self._writer: ShardWriter | None = None
        self._bytes = 0
        self._resume()

    # -------------------------------------------------------------------------------------- resume

    def _resume(self) -> None:
        for stale in self.out.glob(f"{self.name}-*.tar.tmp"):
            stale.unlink()
        if not self.path.exists():
            return
        old = read_manifest(self.path)
        if old.options != self.manifest.options:
            diff = [f"{k} {old.options.get(k)!r} -> {self.manifest.options.get(k)!r}"
                    for k in sorted(set(old.options) | set(self.manifest.options))
                    if old.options.get(k) != self.manifest.options.get(k)]
            raise UserError(f"{self.path}: written with other options ({'; '.join(diff)}); "
                            "rerun with the same options to resume, or use a new --out")
        for shard in old.shards:
            if shard.tar.is_file() and shard.index.is_file() and shard.tar.stat().st_size == shard.bytes:
                self.manifest.shards.append(shard)
                self.done_keys.update(read_index_keys(shard.index))
        self.manifest.failures = list(old.failures)
        self.manifest.complete = old.complete and len(self.manifest.shards) == len(old.shards)

    @property
    def done_sources(self) -> set[str]:
        return {f.source for f in self.manifest.failures}

    # -------------------------------------------------------------------------------------- writing

    def _next_shard_path(self) -> Path:
        used = {int(s.tar.stem.rsplit("-", 1)[1]) for s in self.manifest.shards}
        local = 0
        while (number := local * self.parts + self.part - 1) in used:
            local += 1
        return self.out / f"{self.name}-{number:06d}.tar"

    def add(self, key: str, frames: list[bytes], meta: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer, self._bytes = ShardWriter(self._next_shard_path()), 0
        self._writer.add(key, frames, meta)
        self._bytes += sum(len(f) for f in frames)
        full_clips = self.limit.max_clips is not None and self._writer.clips >= self.limit.max_clips
        full_bytes = self.limit.max_bytes is not None and self._bytes >= self.limit.max_bytes
        if full_clips or full_bytes:
            self.close_shard()

    def fail(self, source: str, reason: str) -> None:
        self.manifest.failures.append(Failure(source, reason))

    def close_shard(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        size = writer.close()
        self.manifest.shards.append(ShardInfo(writer.path, writer.path.with_suffix(".idx"),
                                              writer.clips, writer.frames, size))
        self.manifest.shards.sort(key=lambda s: s.tar.name)
        write_manifest(self.manifest, self.path)

    def finish(self) -> Manifest:
        """Close the open shard, mark the manifest complete, and merge parts if all are complete."""
        self.close_shard()
        self.manifest.complete = True
        write_manifest(self.manifest, self.path)
        if self.parts > 1:
            merge_parts(self.out, self.parts)
        return self.manifest

    def abort(self) -> None:
        """Drop the unfinished shard (its clips will be redone by the next run)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def merge_parts(out: Path, parts: int) -> Manifest | None:
    """Write manifest.json from all part manifests once every part is complete; None until then."""
    manifests = []
    for k in range(1, parts + 1):
        path = manifest_path(out, k, parts)
        if not path.exists():
            return None
        m = read_manifest(path)
        if not m.complete:
            return None
        manifests.append(m)
    options = {k: v for k, v in manifests[0].options.items() if k != "part"} | {"parts": parts}
    merged = Manifest(name=manifests[0].name, options=options, classes=manifests[0].classes, complete=True,
                      shards=sorted((s for m in manifests for s in m.shards), key=lambda s: s.tar.name),
                      failures=[f for m in manifests for f in m.failures])
    write_manifest(merged, out / MANIFEST_NAME)
    return merged
