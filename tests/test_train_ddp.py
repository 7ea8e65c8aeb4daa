"""siammae-train under torchrun: two CPU processes (DDP over gloo) train, checkpoint and resume exactly."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(shards: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", "-m", "model.train_cli", "--shards", str(shards), "--out", str(out),
            "--model", "vit_micro_patch16", "--input-size", "32", "--batch-size", "8", "--max-steps", "4",
            "--device", "cpu", "--threads", "1", "--torch-threads", "1", "--log-every", "1",
            "--warmup-steps", "1", "--blr", "0.01", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_and_resume_like_an_uninterrupted_run(synthetic_shards: Path, tmp_path: Path) -> None:
    torchrun(synthetic_shards, tmp_path / "straight")
    torchrun(synthetic_shards, tmp_path / "resumed", "--stop-at-step", "2")
    done = torchrun(synthetic_shards, tmp_path / "resumed", "--resume")
    assert done.stderr.count("resumed from") == 1             # rank 0 speaks for the job

    ckpt = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2   # each rank's random streams are kept
    assert ckpt["step"] == 4
    assert losses(tmp_path / "resumed") == pytest.approx(losses(tmp_path / "straight"), rel=1e-5)
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")["model"]
    for name, tensor in ckpt["model"].items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)
