"""The scale benchmark: how opening a shard folder, planning an epoch and the DALI loader's first batch
grow with the number of clips, and how much memory the loader and its source workers hold.

    python -m benchmarks.scale --root /tmp/siammae-scale --sizes 1000,13000,100000,250000 \\
        --json benchmarks/results/scale-<machine>-<date>.json

Writes one set of the largest size in the real format (benchmarks/scale_data.py; resumable), then, for
every size and round, runs each step in a fresh process (benchmarks/scale_probe.py): open the folder,
plan epoch 0 for rank 0 of 8, build the DALI CPU loader (parallel source, spawned worker) and take its
first batch. Prints the medians, the growth per clip (a straight-line fit) and what it gives for
Kinetics-400 and for 10 M clips, and checks the targets. The data is deleted at the end unless --keep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import click
import numpy as np

from benchmarks.scale_data import make_scale_set, subset_folder
from siammae_common.console import UserError, info

STEPS = ("open", "plan", "first_batch")
MB = 1 << 20
# (clips, seconds to open, seconds to the first batch): the targets on a 2-core machine
TARGETS = ((100_000, 2.0, 5.0), (250_000, 4.0, 8.0))
ANON_GROWTH_MB = 100          # RssAnon of the loader and of each source worker, from the smallest size


def probe(step: str, shards: Path) -> dict:
    """One step in a fresh Python process; its JSON report."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.scale_probe", step, "--shards", str(shards)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise UserError(f"scale probe {step} on {shards} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(folders: dict[int, Path], rounds: int) -> dict[int, dict[str, list[float]]]:
    """Per size: lists (one value a round) of seconds per step and the memory figures, in MB."""
    out: dict[int, dict[str, list[float]]] = {n: {} for n in folders}
    for r in range(rounds):
        for n, folder in folders.items():
            for step in STEPS:
                rep = probe(step, folder)
                row = out[n]
                row.setdefault(f"{step}_s", []).append(rep["seconds"])
                if step == "first_batch":
                    mem, workers = rep["memory"], rep["workers"]
                    row.setdefault("loader_anon_mb", []).append(mem["RssAnon"] / MB)
                    row.setdefault("loader_peak_mb", []).append(mem["VmHWM"] / MB)
                    row.setdefault("worker_anon_mb", []).append(max(w["RssAnon"] for w in workers) / MB)
                    row.setdefault("worker_peak_mb", []).append(max(w["VmHWM"] for w in workers) / MB)
                elif step == "open":
                    row.setdefault("open_anon_mb", []).append(rep["memory"]["RssAnon"] / MB)
                info(f"round {r + 1}/{rounds}, {n} clips, {step}: {rep['seconds']:.3f} s")
    return out


def fit(sizes: list[int], values: list[float]) -> dict[str, float]:
    """A straight line through (clips, value): per clip, and the values it gives for K400 and 10 M clips."""
    slope, intercept = np.polyfit(np.asarray(sizes, float), np.asarray(values, float), 1)
    return {"per_clip": float(slope), "at_0": float(intercept), "k400_240k": float(intercept + slope * 240_000),
            "clips_10M": float(intercept + slope * 10_000_000)}


def summary(raw: dict[int, dict[str, list[float]]], frames: dict[int, int]) -> dict:
    """Medians per size, the fits, and the targets met or not."""
    sizes = sorted(raw)
    med = {n: {k: median(v) for k, v in raw[n].items()} for n in sizes}
    keys = list(med[sizes[0]])
    fits = {k: fit(sizes, [med[n][k] for n in sizes]) for k in keys} if len(sizes) > 1 else {}
    targets = []
    for clips, open_s, first_s in TARGETS:
        if clips in med:
            targets.append({"clips": clips, "open_s": med[clips]["open_s"], "open_target": open_s,
                            "first_batch_s": med[clips]["first_batch_s"], "first_batch_target": first_s,
                            "met": med[clips]["open_s"] <= open_s and med[clips]["first_batch_s"] <= first_s})
    small, big = sizes[0], sizes[-1]
    growth = {k: med[big][k] - med[small][k] for k in ("loader_anon_mb", "worker_anon_mb")}
    targets.append({"anon_growth_mb": growth, "from_clips": small, "to_clips": big, "target_mb": ANON_GROWTH_MB,
                    "met": all(g <= ANON_GROWTH_MB for g in growth.values())})
    return {"sizes": sizes, "frames": frames, "medians": med, "rounds": raw, "fits": fits, "targets": targets}


def table(s: dict) -> str:
    header = (f"{'clips':>8} {'frames':>11} {'open s':>7} {'plan s':>7} {'1st batch s':>11} "
              f"{'loader anon/peak MB':>20} {'worker anon/peak MB':>20}")
    lines = [header]
    for n in s["sizes"]:
        m = s["medians"][n]
        lines.append(f"{n:>8,} {s['frames'][n]:>11,} {m['open_s']:>7.3f} {m['plan_s']:>7.3f} "
                     f"{m['first_batch_s']:>11.2f} {m['loader_anon_mb']:>9.0f} / {m['loader_peak_mb']:<8.0f} "
                     f"{m['worker_anon_mb']:>9.0f} / {m['worker_peak_mb']:<8.0f}")
    for k, f in s["fits"].items():
        unit = "µs" if k.endswith("_s") else "bytes"
        per = f["per_clip"] * (1e6 if unit == "µs" else MB)
        lines.append(f"  {k:<16} {per:9.3f} {unit}/clip; 240 k clips: {f['k400_240k']:9.2f}, "
                     f"10 M clips: {f['clips_10M']:10.2f} ({'s' if unit == 'µs' else 'MB'})")
    for t in s["targets"]:
        lines.append(f"  target {'met' if t['met'] else 'MISSED'}: {json.dumps({k: v for k, v in t.items() if k != 'met'})}")
    return "\n".join(lines)


@click.command()
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Where the shard set is written (about 55 KB per clip: 14 GB for 250 k clips).")
@click.option("--sizes", default="1000,13000,100000,250000", show_default=True, help="Clip counts, comma list.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes writing the set.")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--keep/--no-keep", default=False, show_default=True, help="Keep the shard set afterwards.")
def main(root: Path, sizes: str, rounds: int, workers: int | None, json_out: Path | None, keep: bool) -> None:
    """Measure open, plan and first batch against the number of clips, each step in a fresh process."""
    counts = sorted({int(v) for v in sizes.split(",") if v.strip()})
    if not counts or counts[0] < 1:
        raise UserError(f"--sizes {sizes!r}: give positive clip counts, e.g. 1000,13000")
    t0 = time.perf_counter()
    shards = make_scale_set(root / "all", counts[-1], workers)
    made = time.perf_counter() - t0
    folders = {n: subset_folder(root, shards, n) for n in counts}
    frames = {n: sum(s.frames for s in shards[:-(-n // 250)]) for n in counts}
    try:
        s = summary(measure(folders, rounds), frames)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    s.update({"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "loadavg": Path("/proc/loadavg").read_text().split()[:3], "make_set_s": round(made, 1)})
    click.echo(table(s))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(s, indent=1) + "\n")
        info(f"wrote {json_out}")


if __name__ == "__main__":
    main()
