"""`make_shards.py --reindex DIR`: the frame table of every shard that lacks one (shards written before
frame tables existed) or whose table no longer matches its tar; the loaders refuse a folder without them.

Each tar is read once, whole: its members' positions, every frame's CRC-32, and the JPEG check of every
frame (`pipeline.jpeg_check`; the frames that fail it are recorded in the table, and the loaders skip
them). Tables are written atomically, one per shard, so an interrupted run resumes where it stopped, and
two runs at once write the same bytes. The loaders never build tables themselves: every rank of every
node would do it at the same moment, and a shared or read-only file system may not take the writes.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from pipeline.frame_table import FrameTableError, read_table_head
from pipeline.shard_format import (
    FRAMES_EXT,
    META_EXT,
    OFFSETS_EXT,
    ShardError,
    ShardInfo,
    frame_table_path_for,
)
from pipeline.shard_reader import check_sample, decode_offsets, grouped_members, read_manifest
from siammae_common.console import UserError, info, progress
from tools.sharding.format_writer import FrameTableBuilder
from tools.sharding.pool import ordered_map


def table_is_current(shard: ShardInfo) -> bool:
    """Whether the shard's frame table exists and matches its tar (size) and the manifest (clips)."""
    try:
        head = read_table_head(frame_table_path_for(shard.tar))
    except FrameTableError:
        return False
    return head.tar_bytes == shard.tar.stat().st_size and head.layout.clips == shard.clips


def build_table(tar_path: Path) -> FrameTableBuilder:
    """The frame table of one tar, read once with `tarfile`; ValueError naming the shard if it is damaged."""
    table = FrameTableBuilder()
    with tarfile.open(tar_path, "r:") as tar:
        for key, group in grouped_members(tar, tar_path):
            check_sample(tar_path, key, group)
            offsets = decode_offsets(tar.extractfile(group[OFFSETS_EXT]).read())
            blob = tar.extractfile(group[FRAMES_EXT]).read()
            meta = json.loads(tar.extractfile(group[META_EXT]).read())
            if offsets[-1] != len(blob) or (offsets[1:] < offsets[:-1]).any():
                raise ValueError(f"{tar_path}: {key}.offsets does not fit its .frames ({len(blob)} bytes)")
            frames = [blob[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
            table.add(key, group[FRAMES_EXT].offset_data, group[META_EXT].offset_data, group[META_EXT].size,
                      offsets, frames, int(meta["height"]), int(meta["width"]), checked=False)
    return table


def _reindex_one(tar: Path) -> tuple[Path, int, str | None]:
    """Worker: (tar, frames found bad, error or None); never raises."""
    try:
        table = build_table(tar)
        table.write(tar)
        return tar, len(table.bad), None
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        return tar, 0, f"{type(exc).__name__}: {exc}"


def _lost(tar: Path, why: str) -> tuple[Path, int, str]:
    return tar, 0, why          # a worker that died (e.g. out of memory): reported as the shard's error


def reindex(root: Path, workers: int | None = None, show_progress: bool | None = None) -> int:
    """Write the missing or stale frame tables of the shard folder `root`; returns how many were written.
    UserError (one line) when the folder is not a shard folder or a shard cannot be read."""
    try:
        manifest = read_manifest(root)
    except ShardError as exc:
        raise UserError(str(exc)) from None
    missing = [s.tar for s in manifest.shards if not s.tar.is_file()]
    if missing:
        raise UserError(f"{missing[0]}: shard listed in the manifest does not exist")
    todo = [s.tar for s in manifest.shards if not table_is_current(s)]
    if not todo:
        info(f"{root}: every shard has its frame table ({len(manifest.shards)} shards); nothing to do")
        return 0
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    bar = progress(total=len(todo), desc="frame tables", unit="shard", disable=None if show_progress else True)
    bad = 0
    try:
        for tar, found, error in ordered_map(_reindex_one, todo, workers, 2 * workers, _lost):
            if error is not None:
                raise UserError(f"{tar}: cannot index this shard ({error}); remake it or remove it from the "
                                f"manifest")
            bad += found
            bar.update(1)
    finally:
        bar.close()
    info(f"{root}: wrote {len(todo)} frame table(s) ({len(manifest.shards) - len(todo)} were current); "
         f"{bad} frame(s) failed the JPEG check and will be skipped by the loaders")
    return len(todo)
