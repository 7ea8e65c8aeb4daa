"""Shards for the GPU check, made on the spot with numpy and Pillow alone (a GPU machine may have no
ffmpeg): UCF101-like clips rendered by the synthetic-set renderer, encoded with make_shards' JPEG
settings and written by make_shards' own shard writer, so the loader reads exactly what it reads in
training.

    python -m benchmarks.gpu_data OUT [--clips 1024 --frames 24 --size 320x240 --scenes 64]

Rendering is the costly part, so a pool of `--scenes` scenes is rendered and encoded once and the
clips reuse their JPEG bytes (clip c holds scene c mod scenes): decoding costs the same for a repeated
JPEG as for a new one, and the set can be as large as the page cache should hold in seconds.
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click
import numpy as np
from PIL import Image

from pipeline.shard_format import Manifest, ShardInfo, index_path_for
from siammae_common.cli_types import width_height
from siammae_common.console import UserError, info
from tools.sharding.format_writer import write_manifest, write_shard
from tools.synthetic.render import random_scene

JPEG_QUALITY = 90          # make_shards' default (tools/sharding/decode.py): baseline, 4:2:0, not optimised


@dataclass(frozen=True)
class ShardSetConfig:
    """How many clips of how many frames of what size, from how many rendered scenes."""

    clips: int = 1024
    frames: int = 24
    width: int = 320
    height: int = 240
    scenes: int = 64
    clips_per_shard: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("clips", "frames", "scenes", "clips_per_shard"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least 1")
        if self.frames < 8:
            raise ValueError(f"frames {self.frames}: a clip needs at least 8 frames for the pair sampler")


def encode_jpeg(frame: np.ndarray) -> bytes:
    """[H, W, 3] uint8 -> the JPEG make_shards would store for it."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2, progressive=False,
                                optimize=False)
    return buf.getvalue()


def render_scene(index: int, cfg: ShardSetConfig) -> list[bytes]:
    """The JPEGs of scene `index` (cfg.frames of them), from its own seed."""
    rng = np.random.default_rng([cfg.seed, index])
    scene = random_scene(rng, cfg.width, cfg.height, 1 + index % 3, speed=0.02,
                         object_size=min(cfg.width, cfg.height) * 0.16, n_frames=cfg.frames,
                         distractors=index % 2, pan_speed=1.5)
    return [encode_jpeg(scene.render(t)[0]) for t in range(cfg.frames)]


def make_shard_set(out: Path, cfg: ShardSetConfig, workers: int | None = None) -> Manifest:
    """Write cfg.clips clips as shards + DALI indexes + manifest.json under `out`; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    n_scenes = min(cfg.scenes, cfg.clips)
    with ProcessPoolExecutor(max_workers=max(1, min(workers or os.cpu_count() or 1, n_scenes))) as pool:
        scenes = list(pool.map(partial(render_scene, cfg=cfg), range(n_scenes)))
    classes = [f"scene{s % 8}" for s in range(8)]
    clips = [(f"clip{c:06d}", scenes[c % n_scenes],
              {"class_name": classes[c % 8], "label": c % 8, "source": f"rendered/scene{c % n_scenes}",
               "fps": 25.0, "height": cfg.height, "width": cfg.width}) for c in range(cfg.clips)]
    shards = []
    for s in range(0, cfg.clips, cfg.clips_per_shard):
        tar = out / f"gpucheck-{s // cfg.clips_per_shard:06d}.tar"
        part = clips[s:s + cfg.clips_per_shard]
        size = write_shard(tar, part)
        shards.append(ShardInfo(tar, index_path_for(tar), len(part), sum(len(p[1]) for p in part), size))
    options = {"made_by": "benchmarks.gpu_data", "jpeg_quality": JPEG_QUALITY, "scenes": n_scenes,
               "size": f"{cfg.width}x{cfg.height}"}
    manifest = Manifest(name="gpucheck", options=options, shards=shards, classes=classes, complete=True)
    write_manifest(manifest, out / "manifest.json")
    return manifest


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--frames", type=click.IntRange(min=8), default=24, show_default=True, help="Frames per clip.")
@click.option("--size", default="320x240", show_default=True, help="Frame size, WIDTHxHEIGHT.")
@click.option("--scenes", type=click.IntRange(min=1), default=64, show_default=True,
              help="Distinct rendered scenes; the clips reuse their JPEGs.")
@click.option("--clips-per-shard", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Render processes [default: all cores].")
def main(out: Path, clips: int, frames: int, size: str, scenes: int, clips_per_shard: int,
         workers: int | None) -> None:
    """Write UCF101-like clip shards of rendered frames under OUT (numpy and Pillow only)."""
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: already holds files; choose an empty folder")
    width, height = width_height(size)
    try:
        cfg = ShardSetConfig(clips, frames, width, height, scenes, clips_per_shard)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    start = time.perf_counter()
    manifest = make_shard_set(out, cfg, workers)
    mb = sum(s.bytes for s in manifest.shards) / 1e6
    info(f"{out}: {manifest.clips} clips, {manifest.frames} frames of {size}, {len(manifest.shards)} shards, "
         f"{mb:.0f} MB, in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
