"""siammae-export --timm: timm loads the encoder strictly and gives the same patch tokens; toys are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner

from model.checkpoint import model_state_dict, save_checkpoint
from model.config import model_config
from model.export import main
from model.siammae import SiamMAE


def checkpoint(tmp_path: Path, name: str, **overrides: object) -> tuple[Path, SiamMAE]:
    torch.manual_seed(0)
    cfg = model_config(name, **overrides)
    model = SiamMAE(cfg)
    with torch.no_grad():                      # trained-looking weights: nothing left at its initial value
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    save_checkpoint(path, {"model": model_state_dict(model), "model_config": cfg.to_dict(), "step": 3})
    return path, model.eval()


@pytest.mark.parametrize(("name", "size"), [("vit_tiny_patch16", 64), ("vit_small_patch8", 32)])
def test_timm_loads_the_export_strictly_and_matches_encode(tmp_path: Path, name: str, size: int) -> None:
    path, model = checkpoint(tmp_path, name, input_size=size)
    out = tmp_path / "export" / "encoder.pth"
    result = CliRunner().invoke(main, [str(path), "--timm", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta == {"timm_model": name + "_224", "img_size": size}
    vit = timm.create_model(meta["timm_model"], pretrained=False, num_classes=0, img_size=meta["img_size"])
    vit.load_state_dict(torch.load(out, weights_only=True), strict=True)
    vit.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        tokens = vit.forward_features(x)[:, 1:]                                 # [B, N, D] without CLS
        expected = model.encode(x).flatten(1, 2)                                # [B, h·w, D]
    assert tokens.shape == expected.shape
    assert (tokens - expected).abs().max() < 1e-4
    assert sorted(p.name for p in out.parent.iterdir()) == ["encoder.json", "encoder.pth"]


def test_toy_sizes_without_a_timm_counterpart_are_refused(tmp_path: Path) -> None:
    path, _ = checkpoint(tmp_path, "vit_micro_patch16")
    out = tmp_path / "export" / "encoder.pth"
    result = CliRunner().invoke(main, [str(path), "--timm", str(out)])
    assert result.exit_code == 2 and "vit_micro_patch16" in result.output and "no timm counterpart" in result.output
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_a_missing_or_broken_checkpoint_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [str(tmp_path / "nope.pt"), "--timm", str(tmp_path / "o.pth")])
    assert result.exit_code == 2 and "nope.pt" in result.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, [str(bad), "--timm", str(tmp_path / "o.pth")])
    assert result.exit_code == 2 and str(bad) in result.output and not (tmp_path / "o.pth").exists()
