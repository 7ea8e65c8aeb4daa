"""Checkpoints: the model survives a round trip; writes are atomic; the lr schedule's shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import load_model, model_state_dict, save_checkpoint
from model.config import model_config
from model.schedule import LRSchedule, param_groups
from model.siammae import SiamMAE


def test_a_saved_model_loads_back_with_its_config_and_the_same_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = model_config("vit_micro_patch8", input_size=32, encoder="joint", decoder="cross", mask_ratio=0.9)
    model = SiamMAE(cfg).eval()
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    save_checkpoint(path, {"model": model_state_dict(model), "model_config": cfg.to_dict(), "step": 7})
    loaded, loaded_cfg = load_model(path)
    assert loaded_cfg == cfg
    assert not loaded.training
    x = torch.randn(2, 3, 48, 64)
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert [p.name for p in path.parent.iterdir()] == ["latest.pt"]       # no temp file left behind


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "latest.pt"
    cfg = model_config("vit_micro_patch16")
    save_checkpoint(path, {"model": {}, "model_config": cfg.to_dict(), "step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"model": {}, "model_config": cfg.to_dict(), "step": 2, "bad": Unpicklable()})
    assert torch.load(path, weights_only=False)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_state_dicts_come_from_the_bare_model_under_ddp_or_compile_wrappers() -> None:
    model = SiamMAE(model_config("vit_micro_patch16"))

    class Wrapper(torch.nn.Module):                      # DDP keeps the model as .module
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    assert model_state_dict(Wrapper(model)).keys() == model.state_dict().keys()
    assert "pos_embed" not in model.state_dict()        # fixed, regenerated from the config


def test_loading_something_else_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a siammae checkpoint"):
        load_model(tmp_path / "other.pt")


def test_lr_warms_up_linearly_then_follows_a_cosine_to_min_lr() -> None:
    s = LRSchedule(peak_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55)
    assert s(110) == pytest.approx(0.1)
    assert all(s(i) >= s(i + 1) for i in range(10, 110))


def test_no_weight_decay_on_biases_norms_and_tokens() -> None:
    model = SiamMAE(model_config("vit_micro_patch16"))
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 and not names[id(p)].endswith("_token") for p in decay["params"])
    assert {"cls_token", "mask_token"} <= {names[id(p)] for p in no_decay["params"]}
