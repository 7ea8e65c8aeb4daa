"""siammae-bench: pairs/s and bytes read per pair of every loader, on the same clips, in one run.

Rows: naive (PyAV per pair from the raw video), naive_ffmpeg (one ffmpeg process per frame),
jpeg_folders (Pillow over extracted frames), wds (the fallback), dali_cpu (the default loader; on a CPU
its byte reader runs in the pipeline's thread), dali_cpu_parallel (the reader in DALI's parallel worker
processes), dali_cpu_reader (the benchmark's own fn.readers.webdataset graph, whole clips), dali_gpu (when
CUDA is present), source (the byte reader alone, no decode, in --py-workers processes), and each DALI
loader row's ceiling: the very same loader with its bytes served from memory (ceiling for dali_cpu,
ceiling_parallel for dali_cpu_parallel, ceiling_gpu for dali_gpu); ceiling_decode_only is the old
decode-only graph fed from memory, for reference. efficiency = pairs/s / the row's ceiling.
The rows run in interleaved rounds (see benchmarks.rounds): medians, min–max, per-round ratios.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
import warnings
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

import click
import torch

from benchmarks import bench_run as br
from benchmarks.rounds import Runner, format_table, plot, run_rounds, summarise
from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
from pipeline.dataset import ShardDataset
from pipeline.frame_index import ShardError
from pipeline.sampling import EpochTooShort, epoch_batches, pairs_per_rank
from siammae_common.cli_types import FRACTION, POSITIVE, OneLineCommand
from siammae_common.console import UserError, info, warn

# each DALI loader row is followed by its ceiling, so that the two run close together in every round
ALL_ROWS = ("naive", "naive_ffmpeg", "jpeg_folders", "wds", "dali_cpu", "ceiling", "dali_cpu_parallel",
            "ceiling_parallel", "dali_gpu", "ceiling_gpu", "dali_cpu_reader", "source", "ceiling_decode_only")
DALI_ROWS = frozenset(ALL_ROWS[4:])


def _device() -> str:
    cpu = f"cpu: {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}; {cpu}"
    return cpu


def _reference_rows(setup: br.BenchSetup, videos: Path | None, rows: set[str], skipped: dict[str, str],
                    cleanup: ExitStack) -> dict[str, Runner]:
    if not {"naive", "naive_ffmpeg", "jpeg_folders"} & rows:
        return {}                             # e.g. the GPU check's DALI rows: PyAV need not be installed
    from benchmarks.bench_loaders import FfmpegPairs, JpegFolderPairs, PyAVPairs, find_videos

    plan = br.bench_plan(setup)
    size, B = setup.cfg.sampling.crop_size, setup.cfg.batch_size
    small_b = max(1, min(B, 8))                 # slow loaders: small batches, so they finish batches
    runners: dict[str, Runner] = {}
    if {"naive", "naive_ffmpeg"} & rows:
        if videos is None:
            for r in ("naive", "naive_ffmpeg"):
                skipped[r] = "no --videos given"
        else:
            paths = find_videos(setup.data.index, videos)
            if "naive" in rows:
                naive = PyAVPairs(plan, size, paths)
                runners["naive"] = lambda: br.run_dataset(setup, naive, batch_size=small_b)
            if "naive_ffmpeg" in rows:
                import imageio_ffmpeg

                per_frame = FfmpegPairs(plan, size, paths, imageio_ffmpeg.get_ffmpeg_exe())
                short = replace(setup, seconds=min(setup.seconds, 4.0))
                runners["naive_ffmpeg"] = lambda: br.run_dataset(short, per_frame, batch_size=2, warmup=1,
                                                                 max_pairs=16)
    if "jpeg_folders" in rows:
        root = br.temp_frame_folders(setup.data.index, plan)     # extracted once, read in every round
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        folders = JpegFolderPairs(plan, size, root, setup.data.index)
        runners["jpeg_folders"] = lambda: br.run_dataset(setup, folders, batch_size=B)
    return runners


def _dali_rows(setup: br.BenchSetup, rows: set[str], skipped: dict[str, str]) -> dict[str, Runner]:
    dali_rows = rows & DALI_ROWS
    try:
        from benchmarks import bench_dali as bd
    except ImportError as exc:
        for r in dali_rows:
            skipped[r] = f"DALI not importable: {exc}"
        return {}
    cpu = replace(setup.cfg, kind="dali", device="cpu", dtype="float32")
    par = replace(cpu, decoder=replace(cpu.decoder, parallel_source=True))
    gpu = bd.gpu_config(setup.cfg)
    runners: dict[str, Runner] = {
        "ceiling": lambda: bd.run_ceiling(setup, cpu),
        "ceiling_parallel": lambda: bd.run_ceiling(setup, par),
        "ceiling_decode_only": lambda: bd.run_decode_only(setup, cpu),
        "dali_cpu": lambda: bd.run_dali_index(setup, cpu),
        "dali_cpu_parallel": lambda: bd.run_dali_index(setup, par),
        "dali_cpu_reader": lambda: bd.run_dali_reader(setup, cpu),
        "source": lambda: bd.run_source(setup, par),
        "ceiling_gpu": lambda: bd.run_ceiling(setup, gpu),
        "dali_gpu": lambda: bd.run_dali_index(setup, gpu),
    }
    if not torch.cuda.is_available():
        for r in dali_rows & {"dali_gpu", "ceiling_gpu"}:
            skipped[r] = "no CUDA device"
        dali_rows -= {"dali_gpu", "ceiling_gpu"}
    return {r: runners[r] for r in dali_rows}


@click.command(cls=OneLineCommand)
@click.option("--shards", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Shard folder (with manifest.json), as written by tools/make_shards.py.")
@click.option("--videos", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="The raw videos the shards were made from (for the naive rows).")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--plot", "plot_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--num-workers", "--workers", "workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="DataLoader worker processes of the reference loaders and wds (siammae-train's --num-workers).")
@click.option("--num-threads", "threads", type=click.IntRange(min=1), default=None,
              help="DALI decoder threads (siammae-train's --num-threads) [default: --num-workers].")
@click.option("--pairs-per-clip", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--crop-size", type=click.IntRange(min=8), default=224, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Interleaved rounds (every row once per round); 3 or more for figures you report.")
@click.option("--seconds", type=POSITIVE, default=3.0, show_default=True,
              help="Measuring time per row and round.")
@click.option("--hw-decoder-load", type=FRACTION, default=0.65, show_default=True)
@click.option("--prefetch-queue-depth", "--prefetch", "prefetch", type=click.IntRange(min=1), default=2, show_default=True,
              help="Batches the DALI pipeline prepares ahead.")
@click.option("--py-num-workers", "--py-workers", "py_workers", type=click.IntRange(min=1), default=1,
              show_default=True, help="Processes of DALI's parallel byte reader (rows with the parallel source).")
@click.option("--source-prefetch", type=click.IntRange(min=1), default=None,
              help="Batches the parallel source's workers prepare ahead [default: 2 per worker].")
@click.option("--only", type=str, default=None, help=f"Comma list of rows (default all): {','.join(ALL_ROWS)}")
def main(shards: Path, videos: Path | None, json_out: Path | None, plot_out: Path | None, batch_size: int,
         workers: int, threads: int | None, pairs_per_clip: int, crop_size: int, rounds: int, seconds: float, hw_decoder_load: float,
         prefetch: int, py_workers: int, source_prefetch: int | None, only: str | None) -> None:
    """Measure every loader on the same clips in interleaved rounds; print a table, optionally JSON and a chart."""
    warnings.filterwarnings("ignore", module=r"nvidia\.dali.*")   # unused-output and deprecation notes
    rows = set(ALL_ROWS) if only is None else {r.strip() for r in only.split(",") if r.strip()}
    unknown = rows - set(ALL_ROWS)
    if unknown:
        raise UserError(f"--only: unknown row(s) {', '.join(sorted(unknown))}")
    try:
        data = ShardDataset.open(shards)
    except ShardError as exc:
        raise UserError(str(exc)) from exc
    try:        # the loaders' own check, before any row starts
        epoch_batches(pairs_per_rank(len(data), 1, pairs_per_clip), batch_size, 1)
    except EpochTooShort as e:
        raise UserError(f"{shards}: --batch-size {batch_size} is {e}: raise --pairs-per-clip "
                        f"(now {pairs_per_clip}) or lower --batch-size") from None
    cfg = LoaderConfig(shards=shards, batch_size=batch_size, num_workers=workers,
                       sampling=PairSamplingConfig(pairs_per_clip=pairs_per_clip, crop_size=crop_size),
                       decoder=DecoderConfig(hw_decoder_load=hw_decoder_load, prefetch_queue_depth=prefetch,
                                             num_threads=threads or workers, py_num_workers=py_workers,
                                             source_prefetch=source_prefetch))
    setup = br.BenchSetup(cfg, data, seconds)
    index = data.index
    skipped: dict[str, str] = {}
    t0 = time.perf_counter()
    with ExitStack() as cleanup:
        runners = _reference_rows(setup, videos, rows, skipped, cleanup)
        runners |= _dali_rows(setup, rows, skipped)
        if "wds" in rows:
            runners["wds"] = lambda: br.run_wds(setup, cfg)
        order = [r for r in ALL_ROWS if r in runners]
        results = run_rounds({r: runners[r] for r in order}, rounds, report=info)
    own = br.own_jpeg_bytes(index, br.bench_plan(setup, epochs_=5))
    loaders = summarise(results, own)
    report = {"device": _device(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "shards": str(shards), "clips": len(index), "frames": int(index.n_frames.sum()),
              "own_jpeg_bytes_per_pair": round(own), "frame_table_bytes": index.table_bytes,
              "config": {"batch_size": batch_size, "workers": cfg.decoder.num_threads,   # DALI threads (as before)
                         "num_workers": workers, "rounds": rounds, "seconds": seconds,
                         "sampling": asdict(cfg.sampling), "decoder": asdict(cfg.decoder)},
              "order": order, "loaders": loaders, "skipped": skipped,
              "wall_s": round(time.perf_counter() - t0, 1)}
    click.echo(f"device: {report['device']}; {len(index)} clips, own JPEG bytes per pair {round(own):,}; "
               f"{rounds} interleaved rounds of {seconds:g} s per row (medians; ratios per round, then median)")
    click.echo(format_table(loaders))
    for name, reason in skipped.items():
        warn(f"{name} not measured: {reason}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        info(f"wrote {json_out}")
    if plot_out:
        plot_out.parent.mkdir(parents=True, exist_ok=True)
        plot(loaders, plot_out, f"siammae-bench, {report['device']}, batch {batch_size}, {workers} workers, "
                                f"median of {rounds} rounds")
        info(f"wrote {plot_out}")
    info(f"bench took {report['wall_s']} s")


if __name__ == "__main__":
    main()
