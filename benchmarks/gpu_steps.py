"""Runs the GPU check's steps under one time budget: each step in its own process group with its own cap,
killed (the whole group) when it runs over; a step that no longer fits the budget is skipped; a step made
of items (benchmarks.gpu_items) is restarted past an item that stalls. Everything a step prints goes to
its own output file as it runs, so a killed step keeps its output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.environment import REPO
from benchmarks.gpu_items import item_state

KILL_GRACE_S = 3.0          # SIGTERM to the group, then SIGKILL after this long
POLL_S = 0.2


class Interrupted(Exception):
    """The check got SIGTERM, SIGINT or SIGHUP."""


@dataclass(frozen=True)
class Step:
    """One step: a command (or the reason it cannot run) built when its turn comes, from what ran before."""

    name: str
    title: str
    cap_s: float                                        # the most it may run
    command: Callable[[], list[str] | str]              # argv, or a reason to skip it
    min_s: float = 5.0                                  # skipped when less than this is left
    item_cap_s: float | None = None                     # items: the most one item may run


@dataclass
class StepRecord:
    """What became of a step (steps.json holds one per step)."""

    name: str
    title: str
    status: str = "pending"      # ok | failed | timeout | partial | skipped | interrupted | not selected
    reason: str = ""
    command: list[str] = field(default_factory=list)
    cap_s: float = 0.0
    timeout_s: float = 0.0
    seconds: float = 0.0
    exit: int | None = None
    restarts: int = 0
    items: dict[str, str] = field(default_factory=dict)


def install_signal_handlers() -> None:
    """The first SIGTERM, SIGINT or SIGHUP raises Interrupted in the main thread, so the check can still
    pack up; later ones are ignored, so they cannot cut the packing short."""
    got: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        got.append(signum)
        if len(got) == 1:
            raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's whole process group, SIGKILL to what is left after KILL_GRACE_S."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:                                            # children that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stalled_item(items_dir: Path, item_cap_s: float) -> str | None:
    """The item that has been running longer than item_cap_s, if any (marked with a .stalled file, so a
    restart is not stopped for it again)."""
    now = time.time()
    for started in items_dir.glob("*.started"):
        name = started.name[:-len(".started")]
        if (item_state(items_dir, name) == "stalled" and not (items_dir / f"{name}.stalled").exists()
                and now - started.stat().st_mtime > item_cap_s):
            (items_dir / f"{name}.stalled").write_text(f"ran over {item_cap_s:.0f} s\n")
            return name
    return None


class StepRunner:
    """Runs steps in order against a deadline; records them in results/steps.json."""

    def __init__(self, results: Path, budget_s: float, reserve_s: float, started: float,
                 on_record: Callable[[], None] = lambda: None) -> None:
        self.results, self.budget_s, self.reserve_s, self.started = results, budget_s, reserve_s, started
        self.records: list[StepRecord] = []
        self.on_record = on_record

    def left(self) -> float:
        """Seconds of the budget left for steps (the reserve kept back for the summary and archive)."""
        return self.budget_s - (time.time() - self.started) - self.reserve_s

    def save(self) -> None:
        data = {"budget_s": self.budget_s, "started": datetime.fromtimestamp(self.started, timezone.utc)
                .isoformat(timespec="seconds"), "elapsed_s": round(time.time() - self.started, 1),
                "steps": [asdict(r) for r in self.records]}
        tmp = self.results / "steps.json.partial"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.results / "steps.json")
        self.on_record()

    def skip(self, step: Step, status: str, reason: str) -> StepRecord:
        record = StepRecord(step.name, step.title, status, reason, cap_s=step.cap_s)
        self.records.append(record)
        self.save()
        return record

    def run(self, step: Step) -> StepRecord:
        """Run one step within min(its cap, what is left of the budget); its record."""
        left = self.left()
        if left < step.min_s:
            return self.skip(step, "skipped", f"budget: {max(left, 0):.0f} s left, the step needs {step.min_s:.0f} s")
        cmd = step.command()
        if isinstance(cmd, str):
            return self.skip(step, "skipped", cmd)
        record = StepRecord(step.name, step.title, "running", command=cmd, cap_s=step.cap_s,
                            timeout_s=round(min(step.cap_s, left), 1))
        self.records.append(record)
        self.save()
        step_dir = self.results / step.name
        step_dir.mkdir(parents=True, exist_ok=True)
        start = time.time()
        try:
            self._run_with_restarts(step, record, step_dir, start + record.timeout_s)
        finally:
            record.seconds = round(time.time() - start, 1)
            if step.item_cap_s is not None:
                record.items = {p.name[:-len(".started")]: item_state(step_dir, p.name[:-len(".started")])
                                for p in sorted(step_dir.glob("*.started"))}
                if record.status == "ok" and any(v != "done" for v in record.items.values()):
                    record.status = "partial"
            self.save()
        return record

    def _run_with_restarts(self, step: Step, record: StepRecord, step_dir: Path, deadline: float) -> None:
        """Run the command; for an item step, restart it past an item that stalled or crashed its process,
        while time is left (only after a run that started an item, so a command that cannot start at
        all is not restarted in a loop)."""
        with (step_dir / "output.txt").open("a") as output:
            while True:
                started_before = len(list(step_dir.glob("*.started")))
                output.write(f"$ {' '.join(record.command)}\n# {datetime.now(timezone.utc).isoformat()}: cap "
                             f"{step.cap_s:.0f} s, {deadline - time.time():.0f} s left for it\n")
                output.flush()
                proc = subprocess.Popen(record.command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
                try:
                    outcome = self._watch(proc, step, step_dir, deadline)
                except Interrupted as exc:
                    kill_group(proc)
                    record.status, record.reason = "interrupted", f"the check got {exc}"
                    raise
                record.exit = proc.returncode
                output.write(f"\n# {outcome}, exit {proc.returncode}\n")
                output.flush()
                progressed = len(list(step_dir.glob("*.started"))) > started_before
                broke = outcome.startswith("stalled") or (outcome == "finished" and proc.returncode != 0)
                if step.item_cap_s is not None and progressed and broke and deadline - time.time() >= step.min_s:
                    record.restarts += 1
                    continue
                record.status = ("timeout" if outcome.startswith(("timeout", "stalled")) else
                                 "ok" if proc.returncode == 0 else "failed")
                record.reason = ("" if record.status == "ok" else outcome if record.status == "timeout" else
                                 f"exit {proc.returncode}: see {step.name}/output.txt")
                return

    def _watch(self, proc: subprocess.Popen, step: Step, step_dir: Path, deadline: float) -> str:
        """Wait for the process; kill its group at the deadline or when an item stalls. What happened."""
        while proc.poll() is None:
            time.sleep(POLL_S)
            if time.time() > deadline:
                kill_group(proc)
                return f"timeout: killed after its {step.cap_s:.0f} s cap or the budget ran out"
            if step.item_cap_s is not None:
                stalled = stalled_item(step_dir, step.item_cap_s)
                if stalled is not None:
                    kill_group(proc)
                    return f"stalled: item {stalled} ran over {step.item_cap_s:.0f} s; its process was killed"
        kill_group(proc)                               # workers a finished step left behind
        return "finished"


def pack(results: Path, archive: Path) -> None:
    """Write results/ as archive (tar.gz, top folder named as the archive), replacing it atomically."""
    partial = archive.with_name(archive.name + ".partial")
    top = archive.name.removesuffix(".tar.gz")
    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
        tar.add(results, arcname=top, filter=lambda t: None if t.name.endswith(".partial") else t)
    os.replace(partial, archive)
