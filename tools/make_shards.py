#!/usr/bin/env python
"""Turn a folder of videos (a UCF101 tree or any videos) into WebDataset clip shards for the DALI loader.

    python tools/make_shards.py SRC --out shards/ [--split trainlist01] [--workers N] [--part K/N]

Each video is decoded once by ffmpeg in a process pool; every decoded frame becomes a checked baseline
JPEG; clips are shuffled (seeded) and written to OUT/<name>-NNNNNN.tar with a DALI index each and
OUT/manifest.json. Rerunning the same command resumes; bad inputs are recorded, never fatal.
Format: pipeline/shard_format.py and shards/README.md.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sharding.decode import DecodeJob, DecodeOptions, DecodeResult, decode_video
from sharding.inputs import collect_inputs, shuffled_part
from sharding.writer import ShardLimit, ShardSink

from pipeline.shard_format import Manifest
from siammae_common.console import UserError, info, progress


def ordered_map(jobs: Iterable[DecodeJob], workers: int, window: int) -> Iterator[DecodeResult]:
    """decode_video over jobs in a process pool, results in job order, at most `window` in flight."""
    if workers <= 1:
        yield from map(decode_video, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future] = deque()
        for job in jobs:
            pending.append(pool.submit(decode_video, job))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def parse_part(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--part {text!r}: use K/N, e.g. 3/8") from None
    if not 1 <= k <= n:
        raise UserError(f"--part {text!r}: need 1 <= K <= N")
    return k, n


def make_shards(src: Path, out: Path, *, name: str = "shards", split: str | None = None,
                options: DecodeOptions | None = None, shard_size: str = "1GB", seed: int = 0,
                part: tuple[int, int] = (1, 1), workers: int | None = None,
                show_progress: bool | None = None) -> Manifest:
    """Shard every video under `src` into `out`; returns the (part's) manifest. Resumes when rerun."""
    options = options or DecodeOptions()
    if not src.exists():
        raise UserError(f"{src}: no such file or directory")
    try:
        limit = ShardLimit.parse(shard_size)
        inputs = collect_inputs(src.resolve(), split)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{out}: output folder is not writable ({e.strerror})") from None
    recorded = {"source": str(src.resolve()), "split": split, "name": name, "seed": seed,
                "shard_size": shard_size, "part": f"{part[0]}/{part[1]}", **asdict(options)}
    sink = ShardSink(out, name, recorded, inputs.classes, limit, *part)
    if sink.manifest.complete:
        info(f"{sink.path}: already complete ({sink.manifest.clips} clips); nothing to do")
        return sink.manifest
    mine = shuffled_part(inputs.videos, seed, *part)
    missing = [m for i, m in enumerate(inputs.missing) if i % part[1] == part[0] - 1]
    skip = sink.done_keys | sink.done_sources
    for source, reason in missing:
        if source not in skip:
            sink.fail(source, reason)
    todo = [v for v in mine if v.key not in skip and v.source not in skip]
    jobs = (DecodeJob(str(v.path), v.source, v.key, v.class_name, v.label, options) for v in todo)
    workers = workers or os.cpu_count() or 1
    start, clips, frames = time.perf_counter(), 0, 0
    bar = progress(total=len(todo), desc=f"shards {part[0]}/{part[1]}" if part[1] > 1 else "shards",
                   unit="clip", disable=None if show_progress else True)
    try:
        for result in ordered_map(jobs, workers, window=4 * workers):
            if result.error is not None:
                sink.fail(result.source, result.error)
            else:
                sink.add(result.key, result.frames, result.meta)
                clips, frames = clips + 1, frames + len(result.frames)
            bar.update(1)
            bar.set_postfix_str(f"{frames / max(1e-9, time.perf_counter() - start):.0f} frames/s")
        manifest = sink.finish()
    except BaseException:
        sink.abort()
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    _summarise(out, manifest, clips, frames, seconds)
    return manifest


def _summarise(out: Path, manifest: Manifest, clips: int, frames: int, seconds: float) -> None:
    info(f"{out}: {len(manifest.shards)} shards, {manifest.clips} clips, {manifest.frames} frames in all; "
         f"this run {clips} clips / {frames} frames in {seconds:.1f} s "
         f"({clips / max(seconds, 1e-9):.1f} clips/s, {frames / max(seconds, 1e-9):.0f} frames/s)")
    if manifest.failures:
        kinds = Counter(f.reason.split(":")[0] for f in manifest.failures)
        info(f"{len(manifest.failures)} input(s) failed (listed in the manifest): "
             + "; ".join(f"{n}x {k}" for k, n in kinds.most_common()))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("shards"),
              show_default=True, help="Output folder.")
@click.option("--name", default="shards", show_default=True, help="Shard file prefix: NAME-000000.tar.")
@click.option("--split", default=None, help="UCF101 split list, e.g. trainlist01 (default: every video).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Resample to this constant rate (default: keep every decoded frame).")
@click.option("--short-side", type=click.IntRange(min=8), default=None, help="Resize the shorter side to this.")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="JPEG quality.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Keep at most this many frames.")
@click.option("--min-frames", type=click.IntRange(min=1), default=8, show_default=True,
              help="Shorter clips are failures.")
@click.option("--keep-damaged", is_flag=True, help="Keep clips whose decoding reported errors.")
@click.option("--shard-size", default="1GB", show_default=True, help="Per shard: e.g. 1GB, 500MB, 100clips.")
@click.option("--seed", default=0, show_default=True, help="Clip-order shuffle.")
@click.option("--part", default="1/1", show_default=True, help="Process part K of N (for job arrays).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
def main(src: Path, out: Path, name: str, split: str | None, fps: float | None, short_side: int | None,
         quality: int, max_frames: int | None, min_frames: int, keep_damaged: bool, shard_size: str,
         seed: int, part: str, workers: int | None) -> None:
    """Write WebDataset clip shards (+ DALI indexes + manifest.json) from the videos under SRC."""
    from pipeline.shard_format import is_valid_key
    if not is_valid_key(name):
        raise UserError(f"--name {name!r}: use letters, digits, '_' and '-' only")
    options = DecodeOptions(fps=fps, short_side=short_side, quality=quality, max_frames=max_frames,
                            min_frames=min_frames, keep_damaged=keep_damaged)
    make_shards(src, out, name=name, split=split, options=options, shard_size=shard_size, seed=seed,
                part=parse_part(part), workers=workers)


if __name__ == "__main__":
    main()
