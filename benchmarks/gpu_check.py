"""Every GPU figure of the project in one command under one time budget (`benchmarks/gpu_check.sh` runs it).

Steps (benchmarks.gpu_plan), each in its own process group with its own cap: env (device, driver,
versions, date, command; the GPU's matrix and copy rates), data, train-eager, loader-sweep,
davis-data, davis, gpu-tests, train-compile. A step that no longer fits the budget is skipped; a
step that runs over its cap is killed and the next one runs. After every step the results so far are
packed into OUT/<name>.tar.gz, replacing the last pack, so OUT always holds exactly one archive, also
when the check is killed; SIGTERM / SIGINT stop the running step and pack what there is.
This process imports neither torch nor DALI: whatever breaks does so inside a step.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click

from benchmarks.environment import gpus, slug
from benchmarks.gpu_plan import STEP_NAMES, CheckConfig, Device, Paths, plan
from benchmarks.gpu_steps import Interrupted, Step, StepRecord, StepRunner, install_signal_handlers, pack
from benchmarks.gpu_summary import best_loader_options, read_json, summarise, summary_markdown
from siammae_common.console import UserError, info

RESERVE_S = 10.0            # kept back from the budget for the summary and the last pack
ENV_CAP_S = 45.0            # the env step (imports everything; ~25 s on 2 busy cores), before the device is known


def _names(text: str | None, option: str) -> set[str]:
    if text is None:
        return set()
    names = {n.strip() for n in text.split(",") if n.strip()}
    if unknown := names - set(STEP_NAMES):
        raise UserError(f"{option}: unknown step(s) {', '.join(sorted(unknown))}; steps: {', '.join(STEP_NAMES)}")
    return names


def _caps(values: tuple[str, ...]) -> dict[str, float]:
    caps = {}
    for value in values:
        name, _, seconds = value.partition("=")
        try:
            caps[name] = float(seconds)
        except ValueError:
            raise UserError(f"--cap {value!r}: expected STEP=SECONDS, e.g. davis=90") from None
        _names(name, "--cap")
    return caps


def _device(choice: str, results: Path) -> Device:
    """cuda or cpu: as chosen, else as the env step saw it (nvidia-smi when the env step failed)."""
    if choice in ("cuda", "cpu"):
        return choice  # type: ignore[return-value]
    env = read_json(results / "env.json")
    if env is not None:
        return "cuda" if env.get("cuda_available") else "cpu"
    return "cuda" if gpus() else "cpu"


def _finish(runner: StepRunner, results: Path, archive: Path) -> str:
    """Summary files and the final pack; the summary text (or why there is none)."""
    try:
        summary = summarise(results)
        (results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        text = summary_markdown(summary)
        (results / "summary.md").write_text(text)
    except Exception as exc:  # noqa: BLE001 (a summary bug must not cost the raw results)
        text = f"summary failed: {exc!r} (the raw results are in the archive)\n"
        (results / "summary-error.txt").write_text(text)
    pack(results, archive)
    return text


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for the one archive (empty or new; on a lent GPU machine, under its output folder).")
@click.option("--budget", type=click.FloatRange(min=30), default=420, show_default=True,
              help="Seconds for the whole check; steps that no longer fit are skipped.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
              help="cpu: the same steps at toy sizes (a rehearsal).")
@click.option("--shards", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Shards to measure on (e.g. carried to the machine) instead of ones made on the spot.")
@click.option("--only", default=None, help=f"Comma list of steps to run (env always runs): {','.join(STEP_NAMES)}.")
@click.option("--skip", default=None, help="Comma list of steps not to run.")
@click.option("--cap", "caps", multiple=True, help="STEP=SECONDS: another cap for a step (repeatable).")
@click.option("--keep-work", is_flag=True, help="Keep the work folder (data, result PNGs) and print its path.")
def main(out: Path, budget: float, device: str, shards: Path | None, only: str | None, skip: str | None,
         caps: tuple[str, ...], keep_work: bool) -> None:
    """Run the GPU check's steps under a time budget and pack their raw outputs and a summary into OUT."""
    started = float(os.environ.get("SIAMMAE_GPU_CHECK_START") or time.time())
    command = os.environ.get("SIAMMAE_GPU_CHECK_COMMAND") or " ".join(["python -m benchmarks.gpu_check", *sys.argv[1:]])
    run = CheckRun(device, (_names(only, "--only") or set(STEP_NAMES)) - _names(skip, "--skip"), _caps(caps),
                   command, budget)
    archive, work, paths = _prepare(out, shards, run)
    install_signal_handlers()
    runner = StepRunner(paths.results, budget, RESERVE_S, started, on_record=lambda: pack(paths.results, archive))
    interrupted, text = False, ""
    try:
        _run_steps(runner, paths, run)
    except Interrupted as exc:
        interrupted = True
        info(f"[gpu-check] {exc}: stopping, packing what there is")
        done = {r.name for r in runner.records}
        runner.records += [StepRecord(n, "", "skipped", "the check was interrupted") if n in run.selected else
                           StepRecord(n, "", "not selected") for n in STEP_NAMES if n not in done]
    finally:
        for _ in range(2):                  # a signal during the packing: pack again (later ones are ignored)
            try:
                runner.save()
                text = _finish(runner, paths.results, archive)
                break
            except Interrupted:
                interrupted = True
        if keep_work:
            info(f"[gpu-check] work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(text)
    info(f"[gpu-check] {archive} ({archive.stat().st_size / 1e3:.0f} kB)")
    bad = [r.name for r in runner.records if r.status not in ("ok", "not selected")]
    if interrupted:
        raise SystemExit(143)
    if bad:
        info(f"[gpu-check] not ok: {', '.join(bad)}")
        raise SystemExit(1)


@dataclass(frozen=True)
class CheckRun:
    """What was asked for: the device (auto / cuda / cpu), the steps, cap overrides, the command, the budget."""

    device: str
    selected: set[str]
    caps: dict[str, float]
    command: str
    budget: float


def _prepare(out: Path, shards: Path | None, run: CheckRun) -> tuple[Path, Path, Paths]:
    """(archive path, work folder, paths): OUT checked empty, a work folder with results/ and scratch/."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise UserError(f"{out}: already holds files; the check needs an empty folder for its one archive")
    name = f"gpu-check-{slug({'gpus': gpus(), 'cpu_cores': os.cpu_count()})}-{datetime.now():%Y%m%d-%H%M%S}"
    work = Path(tempfile.mkdtemp(prefix="siammae-gpu-check-"))
    paths = Paths(work / name, work / "scratch", shards.resolve() if shards else None)
    paths.results.mkdir()
    paths.scratch.mkdir()
    (paths.results / "command.txt").write_text(f"{run.command}\n{datetime.now(timezone.utc).isoformat()}\n"
                                               f"budget {run.budget:g} s, python {sys.executable}\n")
    return out / f"{name}.tar.gz", work, paths


def _run_steps(runner: StepRunner, paths: Paths, run: CheckRun) -> None:
    """env first (it tells the device), then the plan's steps in order."""
    env_cmd = [sys.executable, "-m", "benchmarks.environment", "--json", str(paths.results / "env.json"),
               "--nvidia-smi", str(paths.results / "nvidia-smi.txt"), "--command", run.command]
    runner.run(Step("env", "machine: device, driver, versions, rates", run.caps.get("env", ENV_CAP_S),
                    lambda: env_cmd, 5))
    dev = _device(run.device, paths.results)
    cfg = CheckConfig.for_device(dev, os.cpu_count() or 1).with_caps(run.caps)
    info(f"[gpu-check] device {dev}, budget {run.budget:g} s, steps: "
         f"{', '.join(s for s in STEP_NAMES if s in run.selected)}")
    for step in plan(cfg, paths, lambda: best_loader_options(paths.results, dev)):
        if step.name not in run.selected:
            runner.records.append(StepRecord(step.name, step.title, "not selected"))
            continue
        record = runner.run(step)
        info(f"[gpu-check] {step.name}: {record.status} in {record.seconds:.1f} s"
             + (f" ({record.reason})" if record.reason else ""))


if __name__ == "__main__":
    main()
