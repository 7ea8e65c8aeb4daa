"""Long commands in a batch job (stderr redirected to a file): plain progress lines while they run."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

from model.distributed import DistInfo
from model.train_summary import _processes
from siammae_common.progress import Progress, duration

TRAIN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d train: step (\d+)/([\d,]+) \([\d.]+%\) \| epoch [\d.]+ \| "
                        r"loss [\d.]+ \| lr [\d.e+-]+ \| [\d,]+ pairs/s \| input-bound \d+% \| elapsed \S+"
                        r"( \| ETA \S+)?$")


def _wait_for_lines(log: Path, proc: subprocess.Popen, count: int, timeout: float = 240.0) -> list[str]:
    """The log's train lines once there are `count` of them, read while the process is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if " train: step " in line]
        if len(lines) >= count:
            return lines
        assert proc.poll() is None, f"siammae-train ended (status {proc.returncode}) before writing {count} " \
                                    f"progress lines:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no {count} progress lines after {timeout:.0f} s:\n{log.read_text()}")


def test_redirected_training_writes_a_line_per_logged_step_while_it_runs(synthetic_shards: Path,
                                                                          tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    argv = [sys.executable, "-m", "model.train_cli", "--shards", str(synthetic_shards), "--out", str(tmp_path / "run"),
            "--model", "vit_micro_patch16", "--input-size", "32", "--batch-size", "4", "--device", "cpu",
            "--torch-threads", "1", "--num-threads", "1", "--log-every", "2", "--max-steps", "100000",
            "--recon-every", "100000", "--latest-every", "100000"]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        lines = _wait_for_lines(log, proc, 3)
        assert proc.poll() is None                                  # the lines came while it ran
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = log.read_text()
    assert "siammae-train: 1 process on cpu" in text and "4 pairs per optimizer step" in text
    assert re.search(r"lr [\d.e+-]+ \(--blr [\d.e+-]+ x 4 / 256\)", text)
    assert "loader dali on cpu: 1 decoder thread(s)" in text
    steps = [int(TRAIN_LINE.match(line).group(1)) for line in lines if TRAIN_LINE.match(line)]
    assert len(steps) == len(lines), lines
    assert steps[:3] == [2, 4, 6]                                   # one line per logged step, none between


def test_plain_lines_come_every_n_items_or_every_interval_and_at_the_end() -> None:
    out = io.StringIO()
    bar = Progress(total=10, desc="shards", unit="clip", every=4, seconds=3600, stream=out, terminal=False)
    for i in range(10):
        bar.set_postfix_str(f"{i} failed")
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert [re.search(r"clip (\d+)/10", line).group(1) for line in lines] == ["4", "8", "10"]
    assert "| 3 failed |" in lines[0] and "ETA" in lines[0] and "ETA" not in lines[-1]
    timed = io.StringIO()
    bar = Progress(total=1000, desc="davis", unit="seq", seconds=0, stream=timed, terminal=False)
    bar.update(1)
    bar.update(1)
    assert len(timed.getvalue().splitlines()) == 2                  # seconds=0: a line per update
    silent = io.StringIO()
    for _ in Progress(range(3), desc="inner", stream=silent, terminal=False, lines=False):
        pass
    assert silent.getvalue() == ""


def test_durations_read_as_a_person_would_write_them() -> None:
    assert [duration(s) for s in (4.4, 65, 3 * 3600 + 7 * 60, 2 * 86400 + 3600)] == ["4s", "1m05s", "3h07m", "2d01h"]


def test_the_start_summary_counts_nodes_from_torchruns_local_world_size(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert _processes(DistInfo(rank=0, world_size=16)) == "world size 16 (2 nodes x 8 processes)"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert _processes(DistInfo(rank=0, world_size=2)) == "world size 2 (1 node x 2 processes)"
    assert _processes(DistInfo()) == "1 process"
