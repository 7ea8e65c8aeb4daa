"""Named SiamMAE sizes: a frozen dataclass of dimensions, looked up by name (`vit_small_patch16`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

EncoderKind = Literal["siamese", "joint"]
DecoderKind = Literal["cross-self", "cross", "joint"]
ENCODER_KINDS: tuple[str, ...] = ("siamese", "joint")
DECODER_KINDS: tuple[str, ...] = ("cross-self", "cross", "joint")


@dataclass(frozen=True)
class ModelConfig:
    """Every number that fixes a SiamMAE network (encoder, decoder, masking, loss)."""

    name: str = "vit_small_patch16"
    patch_size: int = 16
    input_size: int = 224                 # training H = W; `encode` accepts any multiple of the patch
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 512          # MAE's decoder; the SiamMAE paper does not state its own
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    encoder: EncoderKind = "siamese"
    decoder: DecoderKind = "cross-self"
    mask_ratio: float = 0.95              # fraction of f2's patches hidden from the encoder
    norm_pix_loss: bool = True            # targets = per-patch normalised pixels

    def __post_init__(self) -> None:
        for what in ("patch_size", "input_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim",
                     "decoder_depth", "decoder_num_heads"):
            if getattr(self, what) < 1:
                raise ValueError(f"{what} {getattr(self, what)}: must be at least 1")
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"encoder {self.encoder!r}: expected one of {', '.join(ENCODER_KINDS)}")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"decoder {self.decoder!r}: expected one of {', '.join(DECODER_KINDS)}")
        if not 0.0 < self.mask_ratio < 1.0:                  # also false for NaN
            raise ValueError(f"mask_ratio {self.mask_ratio}: must be between 0 and 1 (exclusive)")
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size {self.input_size} is not a multiple of patch {self.patch_size}")
        for dim, heads, what in ((self.embed_dim, self.num_heads, "embed_dim"),
                                 (self.decoder_embed_dim, self.decoder_num_heads, "decoder_embed_dim")):
            if dim % heads:
                raise ValueError(f"{what} {dim} is not divisible by its {heads} heads")

    @property
    def grid_size(self) -> int:
        """Patches per side at the training input size."""
        return self.input_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def patch_dim(self) -> int:
        """Pixels predicted per patch: p * p * 3."""
        return self.patch_size ** 2 * 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# encoder sizes follow timm's ViT names; the decoder keeps MAE's 512 x 8 x 16 unless overridden.
_ENCODERS: dict[str, dict[str, Any]] = {
    "vit_tiny_patch16": {"patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_small_patch16": {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base_patch16": {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_small_patch8": {"patch_size": 8, "embed_dim": 384, "depth": 12, "num_heads": 6},
    # toy sizes for tests and the CPU demo: a small decoder too, and a small default input
    "vit_micro_patch16": {"patch_size": 16, "embed_dim": 96, "depth": 3, "num_heads": 3, "input_size": 64,
                          "decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4},
    "vit_micro_patch8": {"patch_size": 8, "embed_dim": 96, "depth": 3, "num_heads": 3, "input_size": 64,
                         "decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4},
    # the smallest that trains: committed test fixtures (a whole run folder in ~300 KB)
    "vit_nano_patch8": {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "input_size": 32,
                        "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2},
    "vit_nano_patch16": {"patch_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2, "input_size": 64,
                         "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2},
    "vit_pico_patch16": {"patch_size": 16, "embed_dim": 48, "depth": 2, "num_heads": 3, "input_size": 128,
                         "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2},
}
MODEL_NAMES: tuple[str, ...] = tuple(_ENCODERS)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The named size with `overrides` applied (None values are ignored). Raises KeyError if unknown."""
    if name not in _ENCODERS:
        raise KeyError(f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)}")
    values = {"name": name, **_ENCODERS[name]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**values)
