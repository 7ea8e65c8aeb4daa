"""Tiny shard folders for tests, written with the shard writers (tools/sharding/format_writer.py).

Frames are "coded": red encodes x, green encodes y and blue encodes the frame index, so a test can
read back which crop, which flip and which frames a loader produced.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import PairSamplingConfig
from pipeline.frame_index import ClipTable
from pipeline.sampling import PlanKey, plan_epoch
from pipeline.shard_format import Manifest, ShardInfo, index_path_for
from tools.sharding.format_writer import write_manifest, write_shard

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


DAMAGE_KINDS = ("header_zeroed", "bytes_flipped", "truncated", "huffman_table")


def damage_jpeg(data: bytes, kind: str) -> bytes:
    """A JPEG damaged the way stored frames get damaged:

    header_zeroed  its first 32 bytes overwritten with zeros;
    bytes_flipped  bits of two bytes in the middle of the entropy-coded data flipped so that they read
                   as a marker (0xFF 0x5A) where none may stand;
    truncated      cut to its first half (no end-of-image marker);
    huffman_table  its first Huffman table's code counts set to 255 (a header only a decoder rejects).
    """
    out = bytearray(data)
    if kind == "header_zeroed":
        out[:32] = bytes(32)
    elif kind == "bytes_flipped":
        sos = data.index(b"\xff\xda")
        start = sos + 2 + (data[sos + 2] << 8 | data[sos + 3])
        mid = (start + len(data) - 2) // 2
        out[mid], out[mid + 1] = 0xFF, 0x5A
    elif kind == "truncated":
        del out[len(out) // 2:]
    elif kind == "huffman_table":
        counts = data.index(b"\xff\xc4") + 5           # marker, length (2), table class/id (1)
        out[counts:counts + 16] = b"\xff" * 16
    else:
        raise ValueError(f"unknown damage {kind!r}; expected one of {', '.join(DAMAGE_KINDS)}")
    return bytes(out)


def damage_in_plan(n_frames: Sequence[int], sampling: PairSamplingConfig, *, height: int = 48, width: int = 64,
                   seed: int = 0, epoch: int = 0) -> dict[tuple[int, int], str]:
    """{(clip, frame): kind}: one frame of each of DAMAGE_KINDS, each read by a pair of a different clip in
    `epoch`'s plan (rank 0 of 1), so a loader meets every one of them in that epoch."""
    count = len(n_frames)
    plan = plan_epoch(ClipTable(np.asarray(n_frames), np.full(count, height), np.full(count, width)), sampling,
                      PlanKey(seed, epoch))
    damage: dict[tuple[int, int], str] = {}
    for p in range(len(plan)):
        clip = int(plan.clip[p])
        if len(damage) == len(DAMAGE_KINDS) or any(c == clip for c, _ in damage):
            continue
        frame = int(plan.i[p]) if len(damage) % 2 else int(plan.j[p])
        damage[clip, frame] = DAMAGE_KINDS[len(damage)]
    return damage


def write_coded_shards(root: Path, n_frames: Sequence[int], *, height: int = 48, width: int = 64,
                       clips_per_shard: int = 4, name: str = "coded",
                       damage: Mapping[tuple[int, int], str] | None = None) -> Path:
    """Write clips with the given frame counts as shards + manifest under `root`; returns root.

    damage: {(clip, frame): kind} frames stored damaged (see damage_jpeg).
    """
    root.mkdir(parents=True, exist_ok=True)
    damage = damage or {}
    clips = []
    for c, n in enumerate(n_frames):
        frames = [jpeg(coded_frame(t, height, width)) for t in range(n)]
        frames = [damage_jpeg(f, damage[c, t]) if (c, t) in damage else f for t, f in enumerate(frames)]
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
