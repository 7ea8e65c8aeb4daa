"""The GPU check's many-part steps, one item (a loader setting, a training configuration) after another,
each with its own result file, so a step that is stopped keeps what it finished and a restart goes on.

    python -m benchmarks.gpu_items sweep --shards S --out DIR --py-workers 1,2,4 --threads 4,8,16 ...
    python -m benchmarks.gpu_items train --out DIR --batch-sizes 256,128,64 [--compile] [--shards S ...]

How the check's step runner (benchmarks.gpu_steps) follows an item: DIR/<item>.started appears when it
starts, DIR/<item>.json when it has finished, DIR/<item>.error (the traceback) when it raised. An item
with a .started file and neither of the others stalled or crashed its process in an earlier run: a
rerun does not retry it, so one hanging setting cannot eat the step.
"""

from __future__ import annotations

import gc
import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from siammae_common.console import UserError, info

Item = tuple[str, Callable[[Path], None]]       # (name, run(json_path)): run writes its result to json_path


def item_state(out: Path, name: str) -> str:
    """done | error | stalled (started, never finished) | pending."""
    if (out / f"{name}.json").exists():
        return "done"
    if (out / f"{name}.error").exists():
        return "error"
    return "stalled" if (out / f"{name}.started").exists() else "pending"


def run_items(out: Path, items: Sequence[Item], between: Callable[[], None] | None = None) -> None:
    """Run the pending items in order; an item that raises is recorded and the next one runs."""
    out.mkdir(parents=True, exist_ok=True)
    for name, run in items:
        state = item_state(out, name)
        if state != "pending":
            info(f"[items] {name}: {state} before, not run again")
            continue
        (out / f"{name}.started").write_text(f"{time.time():.3f}\n")
        tmp, start = out / f"{name}.json.partial", time.perf_counter()
        info(f"[items] {name}: started")
        try:
            run(tmp)
            os.replace(tmp, out / f"{name}.json")
            info(f"[items] {name}: done in {time.perf_counter() - start:.1f} s")
        except Exception:  # noqa: BLE001 (one bad setting must not end the step)
            (out / f"{name}.error").write_text(traceback.format_exc())
            info(f"[items] {name}: FAILED after {time.perf_counter() - start:.1f} s\n{traceback.format_exc()}")
        if between is not None:
            between()


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def sweep_items(shards: Path, rows: tuple[str, str, str], py_workers: Sequence[int], threads: Sequence[int],
                hw_loads: Sequence[float], common: Sequence[str]) -> list[Item]:
    """One siammae-bench run per (source workers, decoder threads, hw_decoder_load). rows = (loader,
    ceiling, reader): the ceiling is the loader itself fed from memory, so it runs beside the loader at
    every point (same workers, threads and hw load, in the same rounds); the reader once per worker
    count, with the first setting that has it; a row this siammae-bench does not know is left out."""
    from benchmarks import bench

    loader, ceiling, reader = rows
    items: list[Item] = []
    for p in py_workers:
        for t in threads:
            for hw in hw_loads:
                wanted = [loader, ceiling] + [reader] * (t == threads[0] and hw == hw_loads[0])
                only = ",".join(r for r in wanted if r in bench.ALL_ROWS)
                args = ["--shards", str(shards), "--only", only, "--workers", str(t), "--hw-decoder-load", str(hw),
                        "--py-workers", str(p), *common]

                def run(path: Path, args: list[str] = args) -> None:
                    bench.main.main([*args, "--json", str(path)], standalone_mode=False)

                items.append((f"loader-p{p}-t{t}-hw{hw:g}", run))
    return items


def train_items(batch_sizes: Sequence[int], compile_: bool, common: Sequence[str]) -> list[Item]:
    """One train_step_bench run per batch size (from memory, and from the loader when --shards is in
    common)."""
    from benchmarks import train_step_bench

    mode = "compile" if compile_ else "eager"
    items: list[Item] = []
    for b in batch_sizes:
        args = ["--batch-size", str(b), "--compile" if compile_ else "--no-compile", *common]

        def run(path: Path, args: list[str] = args) -> None:
            train_step_bench.main.main([*args, "--json", str(path)], standalone_mode=False)

        items.append((f"train-{mode}-b{b}", run))
    return items


def release_memory() -> None:
    """Between training items: drop compiled graphs (each batch size is compiled for its own shapes,
    as training compiles it) and cached GPU memory."""
    import torch

    torch.compiler.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run the GPU check's multi-part steps (see the module docstring)."""


@main.command()
@click.option("--shards", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--rows", default="dali_gpu,ceiling_gpu,source", show_default=True,
              help="siammae-bench rows: the loader, its in-memory ceiling, the byte reader alone.")
@click.option("--py-workers", default="1,2,4", show_default=True, help="Source worker processes to sweep.")
@click.option("--threads", default="4,8,16", show_default=True, help="DALI decoder threads to sweep.")
@click.option("--hw-loads", default="0.65,1.0", show_default=True, help="hw_decoder_load values to sweep.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--crop-size", type=click.IntRange(min=8), default=224, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
def sweep(shards: Path, out: Path, rows: str, py_workers: str, threads: str, hw_loads: str, batch_size: int,
          crop_size: int, rounds: int, seconds: float) -> None:
    """siammae-bench over source workers x decoder threads x hw_decoder_load: OUT/loader-p<P>-t<T>-hw<H>.json."""
    names = tuple(r.strip() for r in rows.split(","))
    if len(names) != 3:
        raise UserError(f"--rows {rows!r}: expected three rows (loader, ceiling, reader)")
    from benchmarks.bench import ALL_ROWS

    common = ["--batch-size", str(batch_size), "--crop-size", str(crop_size), "--rounds", str(rounds),
              "--seconds", str(seconds)]
    out.mkdir(parents=True, exist_ok=True)
    unknown = [r for r in names if r not in ALL_ROWS]
    (out / "rows.json").write_text(json.dumps({"asked": names, "not_in_siammae_bench": unknown}) + "\n")
    if unknown:
        info(f"[items] siammae-bench has no row(s) {', '.join(unknown)}: left out")
    run_items(out, sweep_items(shards, names, _ints(py_workers), _ints(threads), _floats(hw_loads), common))


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--batch-sizes", default="256,128,64", show_default=True)
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True)
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
def train(out: Path, batch_sizes: str, compile_: bool, bench_args: tuple[str, ...]) -> None:
    """train_step_bench at each batch size: OUT/train-<eager|compile>-b<B>.json. Other options go to
    train_step_bench (--device, --model, --steps, --shards, --threads, ...)."""
    run_items(out, train_items(_ints(batch_sizes), compile_, bench_args), between=release_memory)


if __name__ == "__main__":
    main()
