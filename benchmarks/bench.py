"""siammae-bench: pairs/s and bytes read per pair of every loader, on the same clips, in one run.

Rows: naive (PyAV per pair from the raw video), naive_ffmpeg (one ffmpeg process per frame),
jpeg_folders (Pillow over extracted frames), wds (the fallback), dali_cpu (the default loader; on a CPU its byte
reader runs in the pipeline's thread), dali_cpu_parallel (the reader in DALI's parallel worker process), dali_cpu_reader (fn.readers.webdataset, whole
clips), dali_gpu (when CUDA is present), and the ceilings: the same DALI graph fed from memory with
(ceiling) and without (ceiling_decode_only) the augmentation. efficiency = pairs/s / ceiling.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
import torch

from benchmarks import bench_run as br
from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
from pipeline.frame_index import FrameIndex, ShardError
from siammae_common.console import UserError, info, warn

ALL_ROWS = ("naive", "naive_ffmpeg", "jpeg_folders", "wds", "dali_cpu", "dali_cpu_parallel", "dali_cpu_reader",
            "dali_gpu", "ceiling", "ceiling_decode_only", "ceiling_gpu")


def _device() -> str:
    cpu = f"cpu: {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}; {cpu}"
    return cpu


def _reference_rows(setup: br.BenchSetup, videos: Path | None, rows: set[str], results: dict,
                    skipped: dict) -> None:
    from benchmarks.bench_loaders import FfmpegPairs, JpegFolderPairs, PyAVPairs, find_videos

    plan = br.bench_plan(setup)
    size, B = setup.cfg.sampling.crop_size, setup.cfg.batch_size
    small_b = max(1, min(B, 8))                 # slow loaders: small batches, so they finish batches
    if {"naive", "naive_ffmpeg"} & rows:
        if videos is None:
            for r in ("naive", "naive_ffmpeg"):
                skipped[r] = "no --videos given"
        else:
            paths = find_videos(setup.index, videos)
            if "naive" in rows:
                results["naive"] = br.run_dataset(setup, PyAVPairs(plan, size, paths), batch_size=small_b)
            if "naive_ffmpeg" in rows:
                import imageio_ffmpeg

                ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
                results["naive_ffmpeg"] = br.run_dataset(replace(setup, seconds=min(setup.seconds, 4.0)),
                                                         FfmpegPairs(plan, size, paths, ffmpeg),
                                                         batch_size=2, warmup=1, max_pairs=16)
    if "jpeg_folders" in rows:
        root = br.temp_frame_folders(setup.index, plan)
        try:
            results["jpeg_folders"] = br.run_dataset(setup, JpegFolderPairs(plan, size, root, setup.index.keys),
                                                     batch_size=B)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _dali_rows(setup: br.BenchSetup, rows: set[str], results: dict, skipped: dict) -> None:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as exc:
        for r in rows & {"dali_cpu", "dali_cpu_parallel", "dali_cpu_reader", "dali_gpu", "ceiling",
                         "ceiling_decode_only", "ceiling_gpu"}:
            skipped[r] = f"DALI not importable: {exc}"
        return
    cpu = replace(setup.cfg, kind="dali", device="cpu", dtype="float32")
    if "ceiling" in rows:
        results["ceiling"] = br.run_ceiling(setup, cpu, decode_only=False)
    if "ceiling_decode_only" in rows:
        results["ceiling_decode_only"] = br.run_ceiling(setup, cpu, decode_only=True)
    if "dali_cpu" in rows:
        results["dali_cpu"] = br.run_dali_index(setup, cpu)
    if "dali_cpu_parallel" in rows:
        par = replace(cpu, decoder=replace(cpu.decoder, parallel_source=True))
        results["dali_cpu_parallel"] = br.run_dali_index(setup, par)
    if "dali_cpu_reader" in rows:
        results["dali_cpu_reader"] = br.run_dali_reader(setup, cpu)
    gpu_rows = rows & {"dali_gpu", "ceiling_gpu"}
    if gpu_rows and not torch.cuda.is_available():
        for r in gpu_rows:
            skipped[r] = "no CUDA device"
        return
    gpu = replace(setup.cfg, kind="dali", device="cuda", dtype="bfloat16")
    if "ceiling_gpu" in rows:
        results["ceiling_gpu"] = br.run_ceiling(setup, gpu, decode_only=False)
    if "dali_gpu" in rows:
        results["dali_gpu"] = br.run_dali_index(setup, gpu)


def _summarise(results: dict[str, br.Measured], own: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    naive = results.get("naive")
    for name, m in results.items():
        ceiling = results.get("ceiling_gpu" if name == "dali_gpu" else "ceiling")
        row: dict[str, Any] = {"pairs_per_s": round(m.pairs_per_s, 2), "pairs_measured": m.pairs,
                               "seconds": round(m.seconds, 2)}
        row["bytes_per_pair"] = None if m.bytes_per_pair is None else round(m.bytes_per_pair)
        row["bytes_vs_own_jpeg"] = None if m.bytes_per_pair is None else round(m.bytes_per_pair / own, 2)
        row["efficiency"] = None if ceiling is None else round(m.pairs_per_s / ceiling.pairs_per_s, 3)
        row["vs_naive"] = None if naive is None else round(m.pairs_per_s / naive.pairs_per_s, 2)
        if m.note:
            row["note"] = m.note
        out[name] = row
    return out


def format_table(loaders: dict[str, dict[str, Any]]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)
    lines = [(f"{'loader':<20} {'pairs/s':>9} {'bytes/pair':>11} {'x own JPEG':>10} {'efficiency':>10} "
             f"{'vs naive':>8}")]
    for name, r in loaders.items():
        lines.append(f"{name:<20} {f(r['pairs_per_s'], '9.1f')} {f(r['bytes_per_pair'], '11,d')} "
                     f"{f(r['bytes_vs_own_jpeg'], '10.2f')} {f(r['efficiency'], '10.1%')} "
                     f"{f(r['vs_naive'], '8.2f')}")
    return "\n".join(lines)


def plot(loaders: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(loaders)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    bars = ax.bar(names, [loaders[n]["pairs_per_s"] for n in names], color="tab:blue")
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_ylabel("pairs / s")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=35, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command()
@click.option("--shards", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Shard folder (with manifest.json), as written by tools/make_shards.py.")
@click.option("--videos", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="The raw videos the shards were made from (for the naive rows).")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--plot", "plot_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True,
              help="DataLoader workers of the reference loaders and DALI decoder threads.")
@click.option("--pairs-per-clip", type=int, default=2, show_default=True)
@click.option("--crop-size", type=int, default=224, show_default=True)
@click.option("--seconds", type=float, default=6.0, show_default=True, help="Measuring time per loader.")
@click.option("--hw-decoder-load", type=float, default=0.65, show_default=True)
@click.option("--prefetch", type=int, default=2, show_default=True, help="DALI prefetch queue depth.")
@click.option("--only", type=str, default=None, help=f"Comma list of rows (default all): {','.join(ALL_ROWS)}")
def main(shards: Path, videos: Path | None, json_out: Path | None, plot_out: Path | None, batch_size: int,
         workers: int, pairs_per_clip: int, crop_size: int, seconds: float, hw_decoder_load: float,
         prefetch: int, only: str | None) -> None:
    """Measure every loader on the same clips; print a table, optionally write JSON and a bar chart."""
    warnings.filterwarnings("ignore", module=r"nvidia\.dali.*")   # unused-output and deprecation notes
    rows = set(ALL_ROWS) if only is None else {r.strip() for r in only.split(",") if r.strip()}
    unknown = rows - set(ALL_ROWS)
    if unknown:
        raise UserError(f"--only: unknown row(s) {', '.join(sorted(unknown))}")
    try:
        index = FrameIndex.load(shards)
    except ShardError as exc:
        raise UserError(str(exc)) from exc
    cfg = LoaderConfig(shards=shards, batch_size=batch_size, num_workers=workers,
                       sampling=PairSamplingConfig(pairs_per_clip=pairs_per_clip, crop_size=crop_size),
                       decoder=DecoderConfig(hw_decoder_load=hw_decoder_load, prefetch_queue_depth=prefetch,
                                             num_threads=workers))
    setup = br.BenchSetup(cfg, index, seconds)
    results: dict[str, br.Measured] = {}
    skipped: dict[str, str] = {}
    t0 = time.perf_counter()
    _reference_rows(setup, videos, rows, results, skipped)
    _dali_rows(setup, rows, results, skipped)
    wds_rows = {"wds"} & rows
    if wds_rows:
        results["wds"] = br.run_wds(setup, cfg)
    own = br.own_jpeg_bytes(index, br.bench_plan(setup, epochs_=5))
    order = [r for r in ALL_ROWS if r in results]
    loaders = _summarise({r: results[r] for r in order}, own)
    report = {"device": _device(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "shards": str(shards), "clips": len(index), "frames": int(index.n_frames.sum()),
              "own_jpeg_bytes_per_pair": round(own), "index_bytes": index.index_bytes,
              "config": {"batch_size": batch_size, "workers": workers, "seconds": seconds,
                         "sampling": asdict(cfg.sampling), "decoder": asdict(cfg.decoder)},
              "loaders": loaders, "skipped": skipped, "wall_s": round(time.perf_counter() - t0, 1)}
    click.echo(f"device: {report['device']}; {len(index)} clips, own JPEG bytes per pair {round(own):,}")
    click.echo(format_table(loaders))
    for name, reason in skipped.items():
        warn(f"{name} not measured: {reason}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        info(f"wrote {json_out}")
    if plot_out:
        plot_out.parent.mkdir(parents=True, exist_ok=True)
        plot(loaders, plot_out, f"siammae-bench, {report['device']}, batch {batch_size}, {workers} workers")
        info(f"wrote {plot_out}")
    info(f"bench took {report['wall_s']} s")
if __name__ == "__main__":
    main()
