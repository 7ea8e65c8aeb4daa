"""Writes decoded clips into numbered shards, keeps the manifest current, and resumes interrupted runs.

The manifest is rewritten (atomically) after every finished shard, so it always lists exactly the shards
that are complete on disk. A rerun keeps those, skips their clips and the recorded failures (unless
`--retry-failed`), and continues with new shard numbers. With `--part K/N`, part K writes shard numbers
K-1, K-1+N, ... and its own `manifest-partK-of-N.json`, and touches no file of another part, so parts may
run at the same time into one folder; see merge.py for `manifest.json`. Each run holds a lock for the
whole run (`part_lock_name`), so two runs of the same part never write into one folder at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.shard_format import FORMAT_VERSION, MANIFEST_NAME, ClipWarnings, Failure, Manifest, ShardInfo
from pipeline.shard_reader import read_index_keys, read_manifest
from siammae_common.console import UserError
from siammae_common.folder_lock import LOCK_NAME
from tools.sharding.format_writer import ShardWriter, write_manifest

PART_MANIFEST = re.compile(r"^manifest-part(\d+)-of-(\d+)\.json$")


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
    return out / ("manifest.json" if parts == 1 else f"manifest-part{part}-of-{parts}.json")


def part_lock_name(part: int, parts: int) -> str:
    """The lock a run of `--part K/N` holds in its folder (the folder's own lock for a run without parts,
    which `--merge` holds too)."""
    return LOCK_NAME if parts == 1 else f".siammae-part{part}-of-{parts}.lock"


def shard_number(path: Path) -> int | None:
    """`NAME-000042.tar`, or the temp file of an unfinished one, -> 42 (None for other names)."""
    m = re.search(r"-(\d+)\.tar(?:\.\d+\.[0-9a-f]+)?(?:\.tmp)?$", path.name)
    return int(m.group(1)) if m else None


RESUME_HINT = ("make_shards cannot resume from it: rerun with --overwrite to shard again (what it lists is made "
               "anew), or use another --out")


def read_run_manifest(path: Path, hint: str = RESUME_HINT) -> Manifest:
    """A manifest make_shards resumes or merges from; UserError (one line, ending in `hint`, what to do)
    if it is damaged."""
    try:
        return read_manifest(path)
    except (ValueError, KeyError, TypeError, AttributeError) as e:   # not JSON, fields missing or mistyped
        raise UserError(f"{path}: not a valid shard manifest ({type(e).__name__}: {e}); {hint}") from None


def check_partitioning(out: Path, parts: int) -> None:
    """Refuse to mix runs with different --part N in one folder (their shard numbers would collide)."""
    for path in out.glob("manifest-part*-of-*.json"):
        m = PART_MANIFEST.match(path.name)
        if m and int(m.group(2)) != parts:
            raise UserError(f"{out}: holds a --part K/{m.group(2)} run ({path.name}); this run is --part ?/{parts}"
                            f"; use another --out")
    single = out / "manifest.json"
    merged_hint = "delete it (--merge writes it again from the parts' manifests)"
    if parts > 1 and single.is_file() and read_run_manifest(single, merged_hint).options.get("parts") != parts:
        raise UserError(f"{out}: holds a run without --part (manifest.json); use another --out for --part runs")


class ShardSink:
    """Receives clips in order and turns them into shards + manifest."""

    def __init__(self, out: Path, name: str, options: dict[str, Any], classes: list[str], limit: ShardLimit,
                 part: int = 1, parts: int = 1, retry_failed: bool = False, overwrite: bool = False) -> None:
        self.out, self.name, self.limit, self.part, self.parts = out, name, limit, part, parts
        self.path = manifest_path(out, part, parts)
        self.manifest = Manifest(name=name, options=options, classes=classes)
        self.done_keys: set[str] = set()
        self._writer: ShardWriter | None = None
        self._bytes = 0
        self.legacy: Manifest | None = None       # a complete folder of an older format, kept as it is
        if overwrite:
            self._remove_earlier_run()
        self._resume(retry_failed)

    # -------------------------------------------------------------------------------------- resume

    def _owns(self, path: Path) -> bool:
        number = shard_number(path)
        return number is not None and number % self.parts == self.part - 1

    def _remove_earlier_run(self) -> None:
        """--overwrite: this part's shards, indexes and manifest go (and a merged manifest.json, which lists
        them); other parts' files stay."""
        for path in [*self.out.glob(f"{self.name}-*.tar"), *self.out.glob(f"{self.name}-*.idx")]:
            if self._owns(path.with_suffix(".tar")):
                path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        if self.parts > 1:
            (self.out / MANIFEST_NAME).unlink(missing_ok=True)

    def _resume(self, retry_failed: bool) -> None:
        # unfinished shards of earlier runs of this part (this run holds the part's lock: none is being written)
        for stale in [*self.out.glob(f".{self.name}-*.tar.*.tmp"), *self.out.glob(f"{self.name}-*.tar.tmp")]:
            if self._owns(stale):                # another part's open shard is none of our business
                stale.unlink(missing_ok=True)
        if not self.path.exists():
            return
        old = read_run_manifest(self.path)
        if old.format_version != FORMAT_VERSION:
            same = all(self.manifest.options.get(k) == v for k, v in old.options.items())
            if old.complete and same and not retry_failed:
                self.legacy = old
                return
            raise UserError(f"{self.path}: written in shard format version {old.format_version} (this version "
                            f"writes {FORMAT_VERSION}); use a new --out, or pass --overwrite to shard it again")
        if old.options != self.manifest.options:
            diff = [f"{k} {old.options.get(k)!r} -> {self.manifest.options.get(k)!r}"
                    for k in sorted(set(old.options) | set(self.manifest.options))
                    if old.options.get(k) != self.manifest.options.get(k)]
            raise UserError(f"{self.path}: written with other options ({'; '.join(diff)}); "
                            "rerun with the same options to resume, pass --overwrite to discard what it wrote and "
                            "start over with these, or use a new --out")
        for shard in old.shards:
            if shard.tar.is_file() and shard.index.is_file() and shard.tar.stat().st_size == shard.bytes:
                self.manifest.shards.append(shard)
                self.done_keys.update(read_index_keys(shard.index))
        self.manifest.warnings = [w for w in old.warnings if w.key in self.done_keys]
        self.manifest.failures = [] if retry_failed else list(old.failures)
        self.manifest.complete = old.complete and len(self.manifest.shards) == len(old.shards) and not retry_failed

    @property
    def done_sources(self) -> set[str]:
        return {f.source for f in self.manifest.failures}

    # -------------------------------------------------------------------------------------- writing

    def _next_shard_path(self) -> Path:
        used = {shard_number(s.tar) for s in self.manifest.shards}
        local = 0
        while (number := local * self.parts + self.part - 1) in used:
            local += 1
        return self.out / f"{self.name}-{number:06d}.tar"

    def add(self, key: str, source: str, frames: list[bytes], meta: dict[str, Any], pts: np.ndarray,
            messages: tuple[int, tuple[str, ...]] = (0, ())) -> None:
        """Append one clip (its frames were decoded when made); its messages (count, first lines) go to the
        shard's .warnings.jsonl, their count to the manifest."""
        if self._writer is None:
            self._writer, self._bytes = ShardWriter(self._next_shard_path()), 0
        warnings = ClipWarnings(source, key, messages[0], tuple(messages[1])) if messages[0] else None
        self._writer.add(key, frames, meta, pts, checked=True, warnings=warnings)
        self._bytes += sum(len(f) for f in frames)
        full_clips = self.limit.max_clips is not None and self._writer.clips >= self.limit.max_clips
        full_bytes = self.limit.max_bytes is not None and self._bytes >= self.limit.max_bytes
        if full_clips or full_bytes:
            self.close_shard()

    def fail(self, source: str, reason: str) -> None:
        self.manifest.failures.append(Failure(source, reason))

    def forget_failures(self, obsolete: Callable[[Failure], bool]) -> int:
        """Drop the recorded failures this run has made obsolete; returns how many."""
        kept = [f for f in self.manifest.failures if not obsolete(f)]
        forgotten = len(self.manifest.failures) - len(kept)
        self.manifest.failures = kept
        return forgotten

    def close_shard(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        size = writer.close()
        self.manifest.shards.append(ShardInfo(writer.path, writer.path.with_suffix(".idx"),
                                              writer.clips, writer.frames, size, writer.warned))
        self.manifest.shards.sort(key=lambda s: s.tar.name)
        write_manifest(self.manifest, self.path)

    def finish(self, complete: bool = True) -> Manifest:
        """Close the open shard and write the manifest, marked complete unless clips are left to retry."""
        self.close_shard()
        self.manifest.complete = complete
        write_manifest(self.manifest, self.path)
        return self.manifest

    def abort(self) -> None:
        """Drop the unfinished shard (its clips will be redone by the next run)."""
        if self._writer is not None:
            try:
                self._writer.abort()
            except OSError:                        # e.g. the disk is full: flushing the tar fails too
                self._writer.tmp_path.unlink(missing_ok=True)
            self._writer = None
