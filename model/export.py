"""`siammae-export CKPT --timm OUT.pth`: a trained SiamMAE encoder as a timm VisionTransformer state dict.

The encoder already is a timm ViT (timm Blocks, final LayerNorm, CLS token); only its fixed sin-cos
positions are not parameters, so they are written into `pos_embed` for the training grid. Writes
OUT.pth (a plain state dict: `torch.load(..., weights_only=True)`) and OUT.json
{"timm_model": NAME, "img_size": S}, so that

    model = timm.create_model(NAME, num_classes=0, img_size=S)
    model.load_state_dict(torch.load("OUT.pth", weights_only=True), strict=True)

gives the same patch tokens from `forward_features` as `SiamMAE.encode`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from model.checkpoint import model_for_command
from model.config import ModelConfig
from model.pos_embed import sincos_2d
from model.siammae import SiamMAE
from siammae_common.atomic import atomic_write, write_text_atomic
from siammae_common.cli_types import OneLineCommand
from siammae_common.console import UserError, info

# (patch, width, depth, heads) → timm's ViT of that shape (mlp ratio 4, qkv bias, LayerNorm eps 1e-6)
TIMM_MODELS: dict[tuple[int, int, int, int], str] = {
    (16, 192, 12, 3): "vit_tiny_patch16_224",
    (16, 384, 12, 6): "vit_small_patch16_224",
    (16, 768, 12, 12): "vit_base_patch16_224",
    (8, 384, 12, 6): "vit_small_patch8_224",
}
ENCODER_PREFIXES = ("cls_token", "patch_embed.", "blocks.", "norm.")


def timm_name(cfg: ModelConfig) -> str:
    """The timm model with the encoder's shape; UserError when timm has none (e.g. the micro toys)."""
    key = (cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads)
    if key not in TIMM_MODELS or cfg.mlp_ratio != 4.0:
        known = ", ".join(sorted(TIMM_MODELS.values()))
        raise UserError(f"model {cfg.name!r} (patch {cfg.patch_size}, width {cfg.embed_dim}, depth {cfg.depth}, "
                        f"{cfg.num_heads} heads, mlp ratio {cfg.mlp_ratio}) has no timm counterpart; "
                        f"exportable shapes: {known}")
    return TIMM_MODELS[key]


def timm_state_dict(model: SiamMAE) -> dict[str, torch.Tensor]:
    """The encoder's weights under timm's names, with the sin-cos positions as pos_embed [1, 1+N, D]."""
    cfg = model.cfg
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
    state["pos_embed"] = sincos_2d(cfg.embed_dim, cfg.grid_size, cfg.grid_size)
    return state


def export_timm(checkpoint: Path, out: Path) -> tuple[str, int]:
    """Write OUT (state dict) and OUT with suffix .json; returns (timm model name, image size)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.is_dir():
        raise UserError(f"--timm {out}: is a folder; give the file to write, e.g. {out / 'encoder.pth'}")
    model, cfg = model_for_command(checkpoint, map_location="cpu")
    name = timm_name(cfg)
    state = timm_state_dict(model)
    meta = {"timm_model": name, "img_size": cfg.input_size}
    try:
        with atomic_write(out) as f:
            torch.save(state, f)
        write_text_atomic(out.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    except OSError as e:
        raise UserError(f"--timm {out}: cannot write it ({e.strerror})") from None
    return name, cfg.input_size


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--timm", "out", type=click.Path(path_type=Path), required=True,
              help="Write the encoder as a timm ViT state dict here, and its model name and size beside it (.json).")
def main(checkpoint: Path, out: Path) -> None:
    """Export the encoder of a siammae checkpoint so timm (and code built on it) can load it."""
    name, size = export_timm(checkpoint, out)
    info(f"wrote {out} and {out.with_suffix('.json')}: timm.create_model({name!r}, num_classes=0, img_size={size})")


if __name__ == "__main__":
    main()
