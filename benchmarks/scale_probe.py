"""One step of the scale benchmark, in a fresh process: prints one JSON line with the step's wall time
and this process's (and its source workers') memory from /proc (Linux).

    python -m benchmarks.scale_probe open|plan|first_batch --shards DIR

open         open the shard folder (manifest + frame tables)
plan         open, then plan epoch 0 for rank 0 of 8 (the timing covers the plan only)
first_batch  open, build the DALI CPU loader (parallel source, spawned workers, as on a GPU) and take its
             first batch; memory is read after that batch
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
BATCH = 64                    # pairs a batch (1,000 clips give rank 0 of 8 only 250 pairs)


def memory(pid: int | str = "self") -> dict[str, int]:
    """VmHWM (peak resident), VmRSS, RssAnon and RssFile of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in FIELDS:
            out[name] = int(value.split()[0]) * 1024
    return out


def source_workers() -> list[int]:
    """Child processes started by multiprocessing's spawn (DALI's parallel source workers)."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def first_batch(shards: Path, workers: int) -> tuple[float, object]:
    """Seconds to open the folder, build the DALI CPU loader and take its first batch; and the loader."""
    from pipeline.config import DecoderConfig, LoaderConfig, PairSamplingConfig
    from pipeline.dali_loader import DaliPairLoader
    from pipeline.dataset import ShardDataset

    cfg = LoaderConfig(shards=shards, batch_size=BATCH, rank=0, world_size=8, dtype="float32",
                       sampling=PairSamplingConfig(crop_size=32, gap_min=4, gap_max=48),
                       decoder=DecoderConfig(num_threads=2, parallel_source=True, py_num_workers=workers),
                       py_start_method="spawn")
    start = time.perf_counter()
    loader = DaliPairLoader(cfg, ShardDataset.open(shards))
    batch = next(iter(loader))
    seconds = time.perf_counter() - start
    assert batch.f1.shape == (BATCH, 3, 32, 32)
    return seconds, loader


@click.command()
@click.argument("step", type=click.Choice(["open", "plan", "first_batch"]))
@click.option("--shards", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Source workers (first_batch).")
def main(step: str, shards: Path, workers: int) -> None:
    """Run one step and print {"step", "seconds", "memory", "workers"} as one JSON line."""
    from pipeline.config import PairSamplingConfig, PlanKey
    from pipeline.dataset import ShardDataset
    from pipeline.sampling import EpochPlans

    loader = None
    if step == "first_batch":
        seconds, loader = first_batch(shards, workers)
    else:
        start = time.perf_counter()
        data = ShardDataset.open(shards)
        if step == "plan":
            start = time.perf_counter()
            plans = EpochPlans(data.index, PairSamplingConfig(), PlanKey(0, 0, 0, 8), batch_size=BATCH)
            plans.plan(0)
        seconds = time.perf_counter() - start
    report = {"step": step, "seconds": round(seconds, 4), "memory": memory(),
              "workers": [memory(p) for p in source_workers()]}
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    if loader is not None:
        loader.close()          # stops DALI's workers


if __name__ == "__main__":
    main()
