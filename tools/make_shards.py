#!/usr/bin/env python
"""Turn a folder of videos (a UCF101 tree or any videos) into WebDataset clip shards for the DALI loader.

    python tools/make_shards.py SRC --out shards/ [--split trainlist01] [--num-workers N] [--part K/N]
    python tools/make_shards.py --merge shards/          # after all --part K/N runs
    python tools/make_shards.py --reindex shards/        # frame tables for shards written before them

Each video is decoded once by ffmpeg in a process pool; every decoded frame becomes a checked baseline
JPEG with its presentation time; clips are judged by outcome (do the frames cover the stream?), shuffled
(seeded) and written to OUT/<name>-NNNNNN.tar with a DALI index each and OUT/manifest.json. Rerunning the
same command resumes; bad inputs are recorded, never fatal. Format: pipeline/shard_format.py, shards/README.md.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import click

from pipeline.shard_format import Manifest, is_valid_key
from siammae_common.cli_types import POSITIVE, SEED, OneLineCommand
from siammae_common.console import UserError, info, progress, warn
from siammae_common.folder_lock import folder_lock
from tools.sharding.decode import DecodeJob, DecodeOptions, decode_video, lost_job
from tools.sharding.inputs import InputSet, collect_inputs, shuffled_part
from tools.sharding.kinetics import collect_subset
from tools.sharding.merge import merge_if_complete, merge_parts
from tools.sharding.pool import ordered_map
from tools.sharding.reindex import reindex
from tools.sharding.writer import ShardLimit, ShardSink, check_partitioning, part_lock_name


class EnvironmentFailure(click.ClickException):
    """The machine, not the input, stopped the run (a full disk): one line, exit status 1, shards kept."""

    exit_code = 1


def parse_part(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--part {text!r}: use K/N, e.g. 3/8") from None
    if not 1 <= k <= n:
        raise UserError(f"--part {text!r}: need 1 <= K <= N")
    return k, n


def find_inputs(src: Path, split: str | None, subset: str | None = None) -> InputSet:
    """The inputs under SRC (or its split folder `subset`); UserError when SRC is missing, not a folder,
    a Kinetics-style root without --subset, or holds no video at all."""
    if not src.exists():
        raise UserError(f"{src}: no such file or directory")
    if not src.is_dir():
        raise UserError(f"{src}: not a folder (give the folder that holds the videos)")
    if split and subset:
        raise UserError("--split (a UCF101 list) and --subset (a split folder) do not go together")
    try:
        inputs = collect_subset(src.resolve(), subset) if subset else collect_inputs(src.resolve(), split)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    if not inputs.videos and not inputs.problems:
        raise UserError(f"{src}: no videos found (looked for .avi .mp4 .mkv .webm .mov in every sub-folder)")
    unreadable_root = [reason for source, reason in inputs.problems if source == "./"]
    if unreadable_root:
        raise UserError(f"{src}: {unreadable_root[0].split(':')[0]}")
    return inputs


def make_shards(src: Path, out: Path, *, name: str = "shards", split: str | None = None, subset: str | None = None,
                options: DecodeOptions | None = None, shard_size: str = "1GB", seed: int = 0,
                part: tuple[int, int] = (1, 1), workers: int | None = None, retry_failed: bool = False,
                overwrite: bool = False, show_progress: bool | None = None) -> Manifest:
    """Shard every video under `src` into `out`; returns the (part's) manifest. Resumes when rerun.

    The run holds `out`'s lock (its part's, with `part`): a second run of the same part is refused at
    once. `overwrite` discards what an earlier run of this part wrote. The manifest is complete unless
    some clips met an environment failure (they are retried by a rerun).
    """
    options = options or DecodeOptions()
    try:
        limit = ShardLimit.parse(shard_size)
    except ValueError as e:
        raise UserError(str(e)) from None
    inputs = find_inputs(src, split, subset)
    recorded = {"source": str(src.resolve()), "split": split, **({"subset": subset} if subset else {}),
                "name": name, "seed": seed,
                "shard_size": shard_size, "part": f"{part[0]}/{part[1]}", **asdict(options)}
    if part[1] > 1:    # parts must all see the same listing, or the shuffle would assign clips differently
        listing = "\n".join(v.source for v in inputs.videos).encode()
        recorded["inputs"] = {"videos": len(inputs.videos), "sha1": hashlib.sha1(listing).hexdigest()}
    with folder_lock(out, part_lock_name(*part)):
        check_partitioning(out, part[1])
        sink = ShardSink(out, name, recorded, inputs.classes, limit, *part, retry_failed=retry_failed,
                         overwrite=overwrite)
        if sink.legacy is not None:
            info(f"{sink.path}: complete, written by an older make_shards (format version "
                 f"{sink.legacy.format_version}, no frame times); kept as it is (--overwrite shards it again)")
            return sink.legacy
        manifest = _shard(inputs, sink, options, part, workers, show_progress)
        if part[1] > 1 and manifest.complete and (merged := merge_if_complete(out, part[1])) is not None:
            info(f"{out}/manifest.json: all {part[1]} parts complete and merged ({merged.clips} clips)")
    return manifest


def _shard(inputs: InputSet, sink: ShardSink, options: DecodeOptions, part: tuple[int, int],
           workers: int | None, show_progress: bool | None) -> Manifest:
    """Decode this part's videos that are not done yet into `sink`; returns its manifest."""
    listed = {v.source for v in inputs.videos} | {source for source, _ in inputs.problems}
    # a failure this listing no longer reports (a folder readable now, an input gone) is obsolete
    forgotten = sink.forget_failures(lambda f: f.source not in listed)
    mine = shuffled_part(inputs.videos, sink.manifest.options["seed"], *part)
    problems = [p for i, p in enumerate(inputs.problems) if i % part[1] == part[0] - 1]
    skip = sink.done_keys | sink.done_sources
    todo = [v for v in mine if v.key not in skip and v.source not in skip]
    new_problems = [(s, r) for s, r in problems if s not in skip]
    if sink.manifest.complete and not todo and not new_problems:
        if forgotten:
            sink.finish()
        info(f"{sink.path}: already complete ({sink.manifest.clips} clips); "
             + (f"forgot {forgotten} recorded failure(s) of inputs that are fine now" if forgotten else "nothing to do"))
        return sink.manifest
    for source, reason in new_problems:
        sink.fail(source, reason)
    jobs = (DecodeJob(str(v.path), v.source, v.key, v.class_name, v.label, options) for v in todo)
    workers = workers or os.cpu_count() or 1
    start, clips, frames, failed, deferred = time.perf_counter(), 0, 0, 0, []
    bar = progress(total=len(todo), desc=f"shards {part[0]}/{part[1]}" if part[1] > 1 else "shards",
                   unit="clip", disable=None if show_progress else True)
    try:
        for result in ordered_map(decode_video, jobs, workers, 4 * workers, lost_job):
            if result.deferred is not None:
                deferred.append((result.source, result.deferred))
            elif result.error is not None:
                sink.fail(result.source, result.error)
                failed += 1
            else:
                sink.add(result.key, result.source, result.frames, result.meta, result.pts, result.messages)
                clips, frames = clips + 1, frames + len(result.frames)
            bar.set_postfix_str(f"{frames / max(1e-9, time.perf_counter() - start):,.0f} frames/s | "
                                f"{failed} failed", refresh=False)
            bar.update(1)
        manifest = sink.finish(complete=not deferred)
    except OSError as e:
        sink.abort()
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EnvironmentFailure(f"{sink.out}: no space left ({e.strerror}); finished shards are kept, "
                                     "free some space and rerun the same command to resume") from None
        raise EnvironmentFailure(f"{e.filename or sink.out}: {e.strerror}; finished shards are kept, fix it and "
                                 "rerun the same command to resume") from None
    except BaseException:
        sink.abort()
        raise
    finally:
        bar.close()
    _summarise(sink.out, manifest, clips, frames, time.perf_counter() - start, deferred)
    return manifest


def _summarise(out: Path, manifest: Manifest, clips: int, frames: int, seconds: float,
               deferred: list[tuple[str, str]]) -> None:
    info(f"{out}: {len(manifest.shards)} shards, {manifest.clips} clips, {manifest.frames} frames in all; "
         f"this run {clips} clips / {frames} frames in {seconds:.1f} s "
         f"({clips / max(seconds, 1e-9):.1f} clips/s, {frames / max(seconds, 1e-9):.0f} frames/s)")
    if manifest.clips_with_warnings:
        info(f"{manifest.clips_with_warnings} kept clip(s) had decoder messages (listed in the shards' "
             f"*.warnings.jsonl)")
    if manifest.failures:
        kinds = Counter(f.reason.split(":")[0] for f in manifest.failures)
        info(f"{len(manifest.failures)} input(s) failed (listed in the manifest): "
             + "; ".join(f"{n}x {k}" for k, n in kinds.most_common()))
    if deferred:
        warn(f"{len(deferred)} clip(s) not done because of the machine, not the file (first: {deferred[0][0]}: "
             f"{deferred[0][1]}); the manifest stays incomplete: rerun the same command to retry them")


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(path_type=Path), required=False)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("shards"),
              show_default=True, help="Output folder.")
@click.option("--name", default="shards", show_default=True, help="Shard file prefix: NAME-000000.tar.")
@click.option("--split", default=None, help="UCF101 split list, e.g. trainlist01 (default: every video).")
@click.option("--subset", type=click.Choice(["train", "val", "test"]), default=None,
              help="The split folder of a Kinetics-style SRC (train/ val/ test/ replacement/) to shard.")
@click.option("--fps", type=POSITIVE, default=None,
              help="Resample to this constant rate (default: keep every decoded frame).")
@click.option("--short-side", type=click.IntRange(min=8), default=None, help="Resize the shorter side to this.")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="JPEG quality.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Keep at most this many frames.")
@click.option("--min-frames", type=click.IntRange(min=1), default=8, show_default=True,
              help="Shorter clips are failures.")
@click.option("--keep-damaged", is_flag=True, help="Keep truncated or damaged clips (the frames that decode).")
@click.option("--strict", is_flag=True, help="Reject any clip whose decoder printed an error, even if complete.")
@click.option("--retry-failed", is_flag=True, help="Retry the inputs the manifest lists as failed.")
@click.option("--overwrite", is_flag=True,
              help="Discard what an earlier run (of this --part) wrote into OUT, with any options, and start over.")
@click.option("--shard-size", default="1GB", show_default=True, help="Per shard: e.g. 1GB, 500MB, 100clips.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Clip-order shuffle.")
@click.option("--part", default="1/1", show_default=True, help="Process part K of N (for job arrays).")
@click.option("--merge", "merge", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write OUT/manifest.json from the finished --part K/N manifests in this folder (no SRC).")
@click.option("--reindex", "reindex_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the frame tables the loaders need for the shards in this folder that lack one "
                   "(written by an older make_shards); reads each such tar once (no SRC).")
@click.option("--num-workers", "--workers", "workers", type=click.IntRange(min=1), default=None,
              help="Decoding processes (default: all cores).")
def main(src: Path | None, out: Path, name: str, split: str | None, subset: str | None, fps: float | None,
         short_side: int | None, quality: int, max_frames: int | None, min_frames: int, keep_damaged: bool,
         strict: bool, retry_failed: bool, overwrite: bool, shard_size: str, seed: int, part: str, merge: Path | None,
         reindex_dir: Path | None, workers: int | None) -> None:
    """Write WebDataset clip shards (+ DALI indexes, frame tables + manifest.json) from the videos under SRC."""
    if reindex_dir is not None:
        if src is not None or merge is not None:
            raise UserError("--reindex DIR takes no SRC and no --merge")
        with folder_lock(reindex_dir):            # one writer per folder, as for every other pass
            reindex(reindex_dir, workers, show_progress=True)
        return
    if merge is not None:
        if src is not None:
            raise UserError("--merge OUT takes no SRC")
        merged = merge_parts(merge)
        info(f"{merge}/manifest.json: {len(merged.shards)} shards, {merged.clips} clips, "
             f"{len(merged.failures)} failures from {merged.options['parts']} parts")
        return
    if src is None:
        raise UserError("give SRC, the folder of videos (or --merge OUT)")
    if not is_valid_key(name):
        raise UserError(f"--name {name!r}: use letters, digits, '_' and '-' only")
    options = DecodeOptions(fps=fps, short_side=short_side, quality=quality, max_frames=max_frames,
                            min_frames=min_frames, keep_damaged=keep_damaged, strict=strict)
    manifest = make_shards(src, out, name=name, split=split, subset=subset, options=options, shard_size=shard_size,
                           seed=seed, part=parse_part(part), workers=workers, retry_failed=retry_failed,
                           overwrite=overwrite, show_progress=True)
    if not manifest.complete:
        sys.exit(1)


if __name__ == "__main__":
    main()
