"""Shard sets of any size in the real format, made fast for the scale benchmark: the project's own shard
writer (tar, DALI index, frame table, manifest), every frame one of a few flat 16x16 JPEGs (about 283
bytes), 150 to 230 frames a clip (190 on average), 250 clips a shard.

One set of the largest size is written once (resumable: finished shards are kept); smaller sizes are
folders whose manifest lists a prefix of its shards, so every size reads the same files.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.shard_format import Manifest, ShardInfo, frame_table_path_for, index_path_for
from siammae_common.console import info, progress
from tools.sharding.format_writer import ShardWriter, write_manifest
from tools.sharding.reindex import table_is_current

CLIPS_PER_SHARD = 250
FRAMES = (150, 230)                 # frames a clip, uniform (inclusive)
SIDE = 16


def tiny_frames(variants: int = 8) -> list[bytes]:
    """A few flat-colour 16x16 baseline JPEGs (Pillow, quality 75, optimised tables: ~283 bytes each)."""
    out = []
    for v in range(variants):
        buf = io.BytesIO()
        Image.fromarray(np.full((SIDE, SIDE, 3), 20 + 25 * v, np.uint8)).save(buf, "JPEG", quality=75, optimize=True)
        out.append(buf.getvalue())
    return out


def _shard_info(tar: Path, clips: int, frames: int) -> ShardInfo:
    return ShardInfo(tar, index_path_for(tar), clips, frames, tar.stat().st_size)


def write_scale_shard(job: tuple[Path, int, int, int]) -> ShardInfo:
    """Shard number `number` of a set: clips first .. first + count - 1 (frame counts from the seed)."""
    folder, number, count, seed = job
    tar = folder / f"scale-{number:06d}.tar"
    rng = np.random.default_rng([seed, number])
    lengths = rng.integers(FRAMES[0], FRAMES[1] + 1, size=count)
    if tar.is_file() and frame_table_path_for(tar).is_file():
        info_ = _shard_info(tar, count, int(lengths.sum()))
        if table_is_current(info_):
            return info_
    jpegs = tiny_frames()
    writer = ShardWriter(tar)
    for k, n in enumerate(lengths.tolist()):
        clip = number * CLIPS_PER_SHARD + k
        frames = [jpegs[(clip + t) % len(jpegs)] for t in range(n)]
        meta = {"class_name": f"c{clip % 400}", "label": clip % 400, "source": f"scale/{clip}.mp4", "fps": 25.0,
                "vfr": False, "height": SIDE, "width": SIDE}
        writer.add(f"clip{clip:08d}", frames, meta, checked=True)
    writer.close()
    return _shard_info(tar, count, int(lengths.sum()))


def make_scale_set(folder: Path, clips: int, workers: int | None = None, seed: int = 0) -> list[ShardInfo]:
    """Write (or complete) a set of `clips` clips in `folder`; returns its shards in order."""
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = -(-clips // CLIPS_PER_SHARD)
    jobs = [(folder, s, min(CLIPS_PER_SHARD, clips - s * CLIPS_PER_SHARD), seed) for s in range(n_shards)]
    bar = progress(total=n_shards, desc="scale shards", unit="shard")
    shards = []
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for shard in pool.map(write_scale_shard, jobs, chunksize=4):
            shards.append(shard)
            bar.update(1)
    bar.close()
    return shards


def subset_folder(root: Path, shards: list[ShardInfo], clips: int) -> Path:
    """`root/<clips>/manifest.json` listing the first shards that hold `clips` clips (whole shards)."""
    count = -(-clips // CLIPS_PER_SHARD)
    folder = root / f"{clips}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(name="scale", options={"scale_benchmark": True}, shards=shards[:count], complete=True)
    write_manifest(manifest, folder / "manifest.json")
    info(f"{folder}: {manifest.clips} clips, {manifest.frames} frames in {count} shards")
    return folder
