"""Every worker process of every loader dies with the trainer, however the trainer dies (a scheduler's
SIGTERM or SIGKILL sent to its PID alone), and none keeps a shard file open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from coded_shards import write_coded_shards
from test_make_shards_cluster import _alive, _descendants

N_FRAMES = [30, 28, 26, 32, 30, 27, 29, 31]
LOADERS = {"wds": ["--loader", "wds", "--num-workers", "2"],
           "dali-parallel": ["--loader", "dali", "--parallel-source", "on", "--py-num-workers", "2"]}


def open_shard_files(shards: Path) -> list[str]:
    """'PID: path' for every descriptor of any process that points into the shard folder."""
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            targets = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:                       # gone, or not ours to read
            continue
        found += [f"{fd_dir.parent.name}: {t}" for t in targets if t.startswith(str(shards))]
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize(("loader", "sig"), [("wds", signal.SIGKILL), ("wds", signal.SIGTERM),
                                             ("dali-parallel", signal.SIGKILL)])
def test_the_loaders_workers_die_with_the_trainer(tmp_path: Path, loader: str, sig: signal.Signals) -> None:
    shards = write_coded_shards(tmp_path / "shards", N_FRAMES, height=32, width=40, clips_per_shard=3)
    out = tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "model.train_cli", "--shards", str(shards), "--out", str(out), "--model",
         "vit_micro_patch16", "--input-size", "32", "--batch-size", "4", "--device", "cpu", "--max-steps", "100000",
         "--log-every", "1", "--recon-every", "100000", "--torch-threads", "1", "--threads", "1", *LOADERS[loader]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, tree = time.monotonic() + 240, set()
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():   # training runs
        assert trainer.poll() is None, trainer.stderr.read()
        assert time.monotonic() < deadline, "the trainer never logged a step"
        time.sleep(0.1)
    tree = {p for p in _descendants(trainer.pid) if _alive(p)}
    assert len(tree) >= 2, "the loader's worker processes were not found"
    os.kill(trainer.pid, sig)
    trainer.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.1)
    left = [p for p in tree if _alive(p)]
    for p in left:                             # leave the machine clean whatever the verdict
        os.kill(p, signal.SIGKILL)
    assert not left, f"worker processes outlived the trainer: {left}"
    assert not open_shard_files(shards)


SPAWNED_SOURCE = """
import os, sys, time
import numpy as np
from nvidia.dali import fn, pipeline_def
from siammae_common.process_tree import DieWithParentPickler

class Source:
    def __call__(self, info):
        return [np.zeros((4,), np.uint8)] * 2

def main():
    @pipeline_def(batch_size=2, num_threads=1, device_id=None, py_num_workers=2, py_start_method="spawn",
                  py_callback_pickler=DieWithParentPickler())
    def pipe():
        return fn.external_source(Source(), batch=True, batch_info=True, parallel=True)
    p = pipe()
    p.build()
    p.run()
    print("ready", flush=True)
    time.sleep(300)

if __name__ == "__main__":
    main()
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_dali_workers_spawned_with_the_pickler_die_with_their_parent(tmp_path: Path) -> None:
    """The GPU path (DALI spawns its source workers there) on a CPU: the callback pickler's first act in
    each worker is to tie it to its parent."""
    pytest.importorskip("nvidia.dali")
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED_SOURCE)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert parent.stdout.readline().strip() == "ready", parent.stderr.read()
    tree = {p for p in _descendants(parent.pid) if _alive(p)}
    assert len(tree) >= 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.1)
    left = [p for p in tree if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"DALI's spawned workers outlived their parent: {left}"


CLOSE_MID_EPOCH = """
import sys, time
from pathlib import Path
from pipeline.config import LoaderConfig
from pipeline.loader import build_pair_loader

loader = build_pair_loader(LoaderConfig(shards=Path(sys.argv[1]), batch_size=32, kind="wds", num_workers=2))
batches = iter(loader)
for _ in range(1):
    next(batches)
loader.close()           # mid-epoch: the workers are still making the next batches
time.sleep(1)
print("closed cleanly")
"""


def test_a_wds_loader_closed_mid_epoch_stops_its_workers_without_an_abort(tmp_path: Path) -> None:
    """Spawned workers told to stop while handing batches over used to abort in the interpreter's
    teardown ("terminate called without an active exception", "killed by signal: Aborted")."""
    shards = write_coded_shards(tmp_path / "shards", N_FRAMES * 5, height=240, width=320, clips_per_shard=20)
    done = subprocess.run([sys.executable, "-c", CLOSE_MID_EPOCH, str(shards)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "closed cleanly" in done.stdout, done.stderr[-2000:]
    assert "terminate called" not in done.stderr and "Aborted" not in done.stderr, done.stderr[-2000:]
