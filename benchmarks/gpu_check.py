"""One command for the GPU figures (`benchmarks/gpu_check.sh` runs it with the Python it is given).

Steps, each in its own process, every command and its whole output kept in OUT/log.txt:
1. the machine: device, driver, library versions, date, command (OUT/env.json);
2. data: a synthetic UCF101-like set and its shards in a temporary folder (or --shards);
3. the DALI loader rows (`siammae-bench --only dali_gpu,ceiling_gpu`; 224², batch 256) for every
   pair of --threads and --hw-loads, in interleaved rounds (OUT/loader-t<T>-hw<H>.json);
4. training steps (`benchmarks.train_step_bench`; ViT-S/16, bf16): on an in-memory batch (step time,
   MFU), then fed by the loader at the best swept setting; the difference is the loader's overhead
   (OUT/train_step.json);
5. OUT/summary.md and OUT/summary.json: the sweep, the step figures and the targets.
Without CUDA the same steps run in CPU mode at toy sizes (dali_cpu, a micro ViT), well under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import click

from benchmarks.environment import REPO, describe, slug
from benchmarks.gpu_summary import summarise_check, summary_markdown
from siammae_common.console import UserError, info


@dataclass(frozen=True)
class CheckConfig:
    """What the check runs; `for_device` gives the defaults of a GPU and of a CPU machine."""

    device: Literal["cuda", "cpu"]
    threads: tuple[int, ...]             # DALI decoder threads, swept
    hw_loads: tuple[float, ...]          # DALI hw_decoder_load, swept (ignored by the CPU decoder)
    batch_size: int
    crop_size: int
    rounds: int
    seconds: float                       # per loader row and round
    train_args: tuple[str, ...]          # extra arguments of the training-step benchmark
    synthetic_args: tuple[str, ...]      # tools/make_synthetic.py options of the generated set

    @staticmethod
    def for_device(device: Literal["cuda", "cpu"], cores: int) -> CheckConfig:
        if device == "cuda":
            threads = tuple(sorted({t for t in (4, 8, cores) if t <= cores} or {cores}))
            return CheckConfig("cuda", threads, (0.65, 0.9, 1.0), 256, 224, 3, 3.0, (),
                               ("--classes", "8", "--clips", "5"))
        return CheckConfig("cpu", (1, 2), (0.65,), 4, 64, 3, 0.2,
                           ("--input-size", "64", "--batch-size", "4", "--steps", "3", "--warmup", "1",
                            "--torch-threads", "1"),
                           ("--classes", "2", "--clips", "2", "--size", "96x72", "--frames", "30-40"))

    @property
    def rows(self) -> tuple[str, str]:
        """The loader row and its in-memory ceiling in siammae-bench."""
        return ("dali_gpu", "ceiling_gpu") if self.device == "cuda" else ("dali_cpu", "ceiling")


class StepLog:
    """Runs the check's commands, appending each command and its whole output to log.txt."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path, self.timeout_s, self.failed = path, timeout_s, []

    def write(self, text: str) -> None:
        with self.path.open("a") as f:
            f.write(text)

    def run(self, name: str, cmd: list[str]) -> bool:
        """Run cmd from the repository root; True when it exits 0 within the timeout."""
        info(f"[gpu-check] {name}")
        self.write(f"\n==== {name}\n$ {' '.join(cmd)}\n")
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=self.timeout_s, check=False)
            output, rc = done.stdout, done.returncode
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout or ""
            output = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            rc = f"timeout after {self.timeout_s:.0f} s"
        self.write(f"{output}\n---- {name}: exit {rc}, {time.perf_counter() - start:.1f} s\n")
        if rc != 0:
            self.failed.append(name)
        return rc == 0


def make_data(cfg: CheckConfig, log: StepLog, tmp: Path) -> Path | None:
    """A synthetic UCF101-layout set and its shards under tmp; the shard folder, or None on failure."""
    synth, shards, py = tmp / "synthetic", tmp / "shards", sys.executable
    workers = str(min(os.cpu_count() or 1, 8))
    ok = log.run("synthetic clips", [py, "tools/make_synthetic.py", str(synth), "--sets", "ucf",
                                     *cfg.synthetic_args, "--workers", workers])
    ok = ok and log.run("shards", [py, "tools/make_shards.py", str(synth), "--out", str(shards),
                                   "--workers", workers])
    return shards if ok else None


def loader_sweep(cfg: CheckConfig, shards: Path, log: StepLog, out: Path) -> list[Path]:
    """siammae-bench at every (threads, hw_decoder_load); the JSON files written."""
    written = []
    for threads in cfg.threads:
        for hw in cfg.hw_loads:
            path = out / f"loader-t{threads}-hw{hw:g}.json"
            cmd = [sys.executable, "-m", "benchmarks.bench", "--shards", str(shards), "--only", ",".join(cfg.rows),
                   "--batch-size", str(cfg.batch_size), "--crop-size", str(cfg.crop_size),
                   "--workers", str(threads), "--hw-decoder-load", str(hw), "--rounds", str(cfg.rounds),
                   "--seconds", str(cfg.seconds), "--json", str(path)]
            if log.run(f"loader rows, {threads} threads, hw_decoder_load {hw:g}", cmd) and path.exists():
                written.append(path)
    return written


def best_setting(cfg: CheckConfig, sweep: list[Path]) -> tuple[int, float] | None:
    """(threads, hw_decoder_load) of the sweep's fastest loader row, None when no row was measured."""
    best: tuple[float, int, float] | None = None
    for path in sweep:
        report = json.loads(path.read_text())
        row = report["loaders"].get(cfg.rows[0])
        if row is not None and (best is None or row["pairs_per_s"] > best[0]):
            best = (row["pairs_per_s"], report["config"]["workers"], report["config"]["decoder"]["hw_decoder_load"])
    return None if best is None else (best[1], best[2])


def train_steps(cfg: CheckConfig, shards: Path | None, best: tuple[int, float] | None, log: StepLog,
                out: Path) -> Path | None:
    """The training-step benchmark, fed by the loader at the best setting when there is one."""
    path = out / "train_step.json"
    cmd = [sys.executable, "-m", "benchmarks.train_step_bench", "--device", cfg.device, *cfg.train_args,
           "--json", str(path)]
    if shards is not None and best is not None:
        cmd += ["--shards", str(shards), "--threads", str(best[0]), "--hw-decoder-load", str(best[1])]
    return path if log.run("training steps", cmd) and path.exists() else None


def parse_list(text: str | None, kind: type) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise UserError(f"not a comma-separated list of {kind.__name__}: {text!r}") from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Result folder [default: benchmarks/results/gpu-check-<machine>-<date>].")
@click.option("--shards", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Measure on these shards instead of a generated synthetic set.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--threads", default=None, help="DALI threads to sweep, e.g. 4,8,16 [GPU: 4,8,cores; CPU: 1,2].")
@click.option("--hw-loads", default=None, help="hw_decoder_load values to sweep [GPU: 0.65,0.9,1.0].")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="siammae-bench rounds [3].")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Per loader row and round [GPU: 3, CPU: 0.2].")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=1200, show_default=True,
              help="Seconds any one step may take.")
def main(out: Path | None, shards: Path | None, device: str, threads: str | None, hw_loads: str | None,
         rounds: int | None, seconds: float | None, timeout_s: float) -> None:
    """Loader sweep, training step time and MFU, loader overhead: raw output and a summary in one folder."""
    import torch

    dev: Literal["cuda", "cpu"] = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) \
        else "cpu"
    if dev == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device")
    cfg = CheckConfig.for_device(dev, os.cpu_count() or 1)
    cfg = replace(cfg, threads=parse_list(threads, int) or cfg.threads, hw_loads=parse_list(hw_loads, float)
                  or cfg.hw_loads, rounds=rounds or cfg.rounds, seconds=seconds or cfg.seconds)
    command = os.environ.get("SIAMMAE_GPU_CHECK_COMMAND") or " ".join(
        [sys.executable, "-m", "benchmarks.gpu_check", *sys.argv[1:]])
    env = describe(command)
    out = out or REPO / "benchmarks" / "results" / f"gpu-check-{slug(env)}-{datetime.now():%Y-%m-%d-%H%M}"
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: already holds results; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(env, indent=1) + "\n")
    log = StepLog(out / "log.txt", timeout_s)
    log.write(f"gpu-check {env['date']}\ncommand: {command}\nenvironment:\n{json.dumps(env, indent=1)}\n"
              f"settings: {cfg}\n")
    if dev == "cuda":
        log.run("nvidia-smi", ["nvidia-smi"])
    tmp = Path(tempfile.mkdtemp(prefix="siammae-gpu-check-"))
    try:
        data = shards or make_data(cfg, log, tmp)
        sweep = loader_sweep(cfg, data, log, out) if data is not None else []
        step = train_steps(cfg, data, best_setting(cfg, sweep), log, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarise_check(env, cfg.rows, sweep, step, log.failed, data_source=str(shards or "synthetic"))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = summary_markdown(summary)
    (out / "summary.md").write_text(text)
    click.echo(text)
    info(f"[gpu-check] wrote {out}")
    if log.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
