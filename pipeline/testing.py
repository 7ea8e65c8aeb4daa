"""Tiny shard folders for tests and the benchmark's smoke run, written with shard_format's writers.

Frames are "coded": red encodes x, green encodes y and blue encodes the frame index, so a test can
read back which crop, which flip and which frames a loader produced.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.shard_format import Manifest, ShardInfo, index_path_for, write_manifest, write_shard

BLUE_PER_FRAME = 4          # blue = 4 * frame index (so clips up to 64 frames stay inside 0..255)


def coded_frame(t: int, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8: R = 255 x / (W-1), G = 255 y / (H-1), B = BLUE_PER_FRAME * t."""
    yy, xx = np.mgrid[0:height, 0:width]
    r = np.rint(255 * xx / max(width - 1, 1))
    g = np.rint(255 * yy / max(height - 1, 1))
    b = np.full_like(r, min(BLUE_PER_FRAME * t, 255))
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def write_coded_shards(root: Path, n_frames: Sequence[int], *, height: int = 48, width: int = 64,
                       clips_per_shard: int = 4, name: str = "coded") -> Path:
    """Write clips with the given frame counts as shards + manifest under `root`; returns root."""
    root.mkdir(parents=True, exist_ok=True)
    clips = []
    for c, n in enumerate(n_frames):
        frames = [jpeg(coded_frame(t, height, width)) for t in range(n)]
        meta = {"class_name": f"class{c % 3}", "label": c % 3, "source": f"coded/clip{c}.avi", "fps": 25.0,
                "height": height, "width": width}
        clips.append((f"clip{c:04d}", frames, meta))
    shards = []
    for s in range(0, len(clips), clips_per_shard):
        tar = root / f"{name}-{s // clips_per_shard:06d}.tar"
        part = clips[s:s + clips_per_shard]
        size = write_shard(tar, part)
        shards.append(ShardInfo(tar, index_path_for(tar), len(part), sum(len(p[1]) for p in part), size))
    manifest = Manifest(name=name, options={"coded": True}, shards=shards,
                        classes=["class0", "class1", "class2"], complete=True)
    write_manifest(manifest, root / "manifest.json")
    return root
