"""A run folder written before the configuration tree was restructured (tests/fixtures/run_before_i14/,
made by tests/fixtures/make_old_run.py with that code) still loads and resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from coded_shards import write_coded_shards

from model.checkpoint import load_checkpoint, load_model
from model.config import ModelConfig, model_config
from model.train_cli import main
from model.train_config import TrainConfig

OLD_RUN = Path(__file__).resolve().parent / "fixtures" / "run_before_i14"
N_FRAMES = [12, 9, 14, 10, 11, 13]          # as make_old_run.py: 12 pairs an epoch, 3 steps of 4
ARGS = ["--model", "vit_nano_patch8", "--batch-size", "4", "--device", "cpu", "--loader", "wds",
        "--num-workers", "0", "--warmup-steps", "1", "--max-steps", "6", "--log-every", "1",
        "--recon-every", "1000", "--torch-threads", "1", "--gap-min", "2", "--gap-max", "6"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_old_checkpoint_loads_with_safe_loading():
    state = load_checkpoint(OLD_RUN / "checkpoints" / "latest.pt")       # torch.load(weights_only=True)
    assert state["step"] == 2 and state["world_size"] == 1
    assert ModelConfig.from_dict(state["model_config"]) == model_config("vit_nano_patch8")
    model, cfg = load_model(OLD_RUN / "checkpoints" / "latest.pt")
    features = model.encode(torch.zeros(1, 3, cfg.input_size, cfg.input_size))
    assert torch.isfinite(features).all()


def test_old_config_json_reads_into_a_train_config():
    saved = json.loads((OLD_RUN / "config.json").read_text())
    cfg = TrainConfig.from_dict(saved["train"])              # the flat layout, old names (norm_pix, threads, ...)
    assert cfg.model == model_config("vit_nano_patch8")
    assert (cfg.batch_size, cfg.sampling.gap_min, cfg.sampling.gap_max, cfg.loader) == (4, 2, 6, "wds")
    assert cfg.sampling.crop_size == 32 and cfg.dali.num_threads == 0 and cfg.dali.parallel_source is None
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg                  # and today's layout reads back too


def test_old_run_resumes_one_step(tmp_path: Path):
    shards = write_coded_shards(tmp_path / "shards", N_FRAMES, height=32, width=40, clips_per_shard=3)
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    result = CliRunner().invoke(main, ["--shards", str(shards), "--out", str(run), *ARGS, "--resume",
                                       "--stop-at-step", "3"])
    assert result.exit_code == 0, result.output
    assert "at step 2" in result.output
    resumed = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert resumed["step"] == 3
    old = load_checkpoint(OLD_RUN / "checkpoints" / "latest.pt")
    changed = [k for k in old["model"] if not torch.equal(old["model"][k], resumed["model"][k])]
    assert changed, "one more optimizer step changes the weights"
