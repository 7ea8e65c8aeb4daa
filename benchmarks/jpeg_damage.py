"""Which damage to a stored JPEG frame each decoder notices, and whether the two loaders agree.

Takes frames from a shard folder, damages copies of them in several ways (seeded), and asks: the byte
check both loaders run (pipeline/jpeg_check.py), Pillow (the `wds` fallback's decoder), DALI's full
decode, and DALI's region-of-interest decode of a random crop (what training runs). A loader treats a
frame as bad when the byte check or its own decoder fails; the last column counts frames the two
loaders would judge differently.

    python benchmarks/jpeg_damage.py --shards shards/demo --trials 200
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
from PIL import Image

from pipeline.config import DecoderConfig, PairSamplingConfig
from pipeline.dali_decode_check import decoder_failures
from pipeline.dali_graph import GraphSpec
from pipeline.frame_index import FrameIndex, FrameReader
from pipeline.jpeg_check import jpeg_problem
from pipeline.sampling import sample_crops


def scan_start(data: bytes) -> int:
    sos = data.index(b"\xff\xda")
    return sos + 2 + (data[sos + 2] << 8 | data[sos + 3])


def flip_bits(lo: Callable[[bytes], int], hi: Callable[[bytes], int]) -> Callable[..., bytes]:
    def damage(data: bytes, rng: np.random.Generator) -> bytes:
        out = bytearray(data)
        for pos in rng.integers(lo(data), hi(data), int(rng.integers(1, 9))):
            out[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(out)
    return damage


def random_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for pos in rng.integers(scan_start(data), len(data) - 2, int(rng.integers(1, 9))):
        out[pos] = int(rng.integers(0, 256))
    return bytes(out)


def zero_block(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    start, length = int(rng.integers(scan_start(data), len(data) - 66)), int(rng.integers(8, 65))
    out[start:start + length] = bytes(length)
    return bytes(out)


DAMAGE = {
    "header zeroed (first 32 bytes)": lambda d, rng: bytes(32) + d[32:],
    "truncated (cut at 10-95%)": lambda d, rng: d[:int(len(d) * rng.uniform(0.10, 0.95))],
    "1-8 bits flipped, entropy-coded data": flip_bits(scan_start, lambda d: len(d) - 2),
    "1-8 bytes overwritten, entropy-coded data": random_bytes,
    "8-64 bytes zeroed, entropy-coded data": zero_block,
    "1-8 bits flipped, header (tables)": flip_bits(lambda d: 2, scan_start),
}


def pillow_fails(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.convert("RGB")
    except Exception:  # noqa: BLE001 (any failure counts)
        return True
    return False


@click.command()
@click.option("--shards", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--trials", type=int, default=200, show_default=True, help="Damaged frames per kind.")
@click.option("--seed", type=int, default=0, show_default=True)
def main(shards: Path, trials: int, seed: int) -> None:
    """Print, per kind of damage, the share of frames each check and decoder rejects."""
    start = time.perf_counter()
    index = FrameIndex.open(shards)
    reader, rng = FrameReader(index), np.random.default_rng(seed)
    decoder = DecoderConfig(num_threads=1)
    full = GraphSpec(PairSamplingConfig(), decoder, decode_only=True)
    roi = GraphSpec(PairSamplingConfig(), decoder)
    click.echo(f"{trials} frames per kind from {shards} ({len(index)} clips); seed {seed}")
    click.echo("| damage | byte check | Pillow | DALI decode | DALI crop decode | bad for wds | bad for dali | differ |")
    click.echo("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, damage in DAMAGE.items():
        clips = rng.integers(0, len(index), trials)
        frames = rng.integers(0, index.n_frames[clips])
        damaged = [damage(d, rng) for d in reader.read_bytes(clips, frames)]
        crops = sample_crops(index.clips.height[clips], index.clips.width[clips], (0.5, 1.0), (3 / 4, 4 / 3), rng)
        anchors = np.ascontiguousarray(crops[:, [1, 0]], dtype=np.int32)
        shapes = np.ascontiguousarray(crops[:, [3, 2]], dtype=np.int32)
        check = np.array([jpeg_problem(d, int(index.clips.height[c]), int(index.clips.width[c])) is not None
                          for d, c in zip(damaged, clips)])
        pil = np.array([pillow_fails(d) for d in damaged])
        dali, dali_roi = np.zeros(trials, bool), np.zeros(trials, bool)
        dali[[n for n, _ in decoder_failures(damaged, anchors, shapes, full, None)]] = True
        dali_roi[[n for n, _ in decoder_failures(damaged, anchors, shapes, roi, None)]] = True
        wds, dali_loader = check | pil, check | dali_roi
        shares = [f"{100 * v.mean():.0f}%" for v in (check, pil, dali, dali_roi, wds, dali_loader)]
        click.echo(f"| {name} | {' | '.join(shares)} | {int((wds != dali_loader).sum())} |")
    _time_the_check(index, reader, rng)
    click.echo(f"took {time.perf_counter() - start:.1f} s")


def _time_the_check(index: FrameIndex, reader: FrameReader, rng: np.random.Generator) -> None:
    """What the byte check costs on undamaged frames (best of 5 passes over 500 frames, this thread's CPU)."""
    clips = rng.integers(0, len(index), 500)
    frames = reader.read_bytes(clips, rng.integers(0, index.n_frames[clips]))
    sizes = [(int(index.clips.height[c]), int(index.clips.width[c])) for c in clips]
    best = float("inf")
    for _ in range(5):
        t = time.thread_time()
        problems = [jpeg_problem(d, h, w) for d, (h, w) in zip(frames, sizes)]
        best = min(best, (time.thread_time() - t) / len(frames))
    click.echo(f"byte check on {len(frames)} undamaged frames (mean {np.mean([len(d) for d in frames]):,.0f} bytes): "
               f"{best * 1e6:.1f} us per frame; {sum(p is not None for p in problems)} flagged")


if __name__ == "__main__":
    main()
