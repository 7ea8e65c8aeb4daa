"""SiamMAE (Gupta et al., 2023): a siamese ViT encodes f1 whole and f2 95% masked; a decoder that
cross-attends from f2's tokens to f1's reconstructs f2's hidden patches.

Shapes: B batch, N patches per frame, K visible patches of f2, D encoder width, Dd decoder width,
P = p * p * 3 pixels per patch. Token sequences carry a CLS token first (no loss on it).
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import NamedTuple

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from model.blocks import CrossSelfBlock
from model.config import ModelConfig
from model.masking import Masking, gather_tokens, random_masking
from model.pos_embed import sincos_2d

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)


@lru_cache(maxsize=32)
def _resampled_sincos(dim: int, grid_h: int, grid_w: int, base_grid: int) -> torch.Tensor:
    return sincos_2d(dim, grid_h, grid_w, base_grid=base_grid)      # [1, 1+h*w, dim], never modified


class SiamMAEOutput(NamedTuple):
    loss: torch.Tensor   # [] mean squared error over the masked patches of f2
    pred: torch.Tensor   # [B, N, P] predicted (normalised, if norm_pix_loss) pixels of every f2 patch
    mask: torch.Tensor   # [B, N] 1 = masked, 0 = visible


class SiamMAE(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, Dd, g = cfg.embed_dim, cfg.decoder_embed_dim, cfg.grid_size

        # encoder: a plain ViT with fixed sin-cos positions
        self.patch_embed = PatchEmbed(img_size=cfg.input_size, patch_size=cfg.patch_size, in_chans=3,
                                      embed_dim=D, strict_img_size=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.register_buffer("pos_embed", sincos_2d(D, g, g), persistent=False)       # [1, 1+N, D]
        self.blocks = nn.ModuleList([Block(D, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True,
                                           norm_layer=_LayerNorm) for _ in range(cfg.depth)])
        self.norm = _LayerNorm(D)

        # decoder
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.register_buffer("decoder_pos_embed", sincos_2d(Dd, g, g), persistent=False)  # [1, 1+N, Dd]
        if cfg.decoder == "joint":
            blocks = [Block(Dd, cfg.decoder_num_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=_LayerNorm)
                      for _ in range(cfg.decoder_depth)]
        else:
            blocks = [CrossSelfBlock(Dd, cfg.decoder_num_heads, cfg.mlp_ratio,
                                     self_attention=cfg.decoder == "cross-self")
                      for _ in range(cfg.decoder_depth)]
        self.decoder_blocks = nn.ModuleList(blocks)
        self.decoder_norm = _LayerNorm(Dd)
        self.decoder_pred = nn.Linear(Dd, cfg.patch_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation: xavier-uniform linears and patch projection, N(0, 0.02) tokens."""
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------------------------- helpers
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, N, P], patches in row-major order, pixels (row, col, channel)."""
        p = self.cfg.patch_size
        B, C, H, W = imgs.shape
        x = imgs.reshape(B, C, H // p, p, W // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: torch.Tensor, grid_h: int | None = None) -> torch.Tensor:
        """[B, N, P] -> [B, 3, H, W]; a square grid unless grid_h is given."""
        p = self.cfg.patch_size
        B, N, _ = x.shape
        h = grid_h or round(N ** 0.5)
        w = N // h
        x = x.reshape(B, h, w, p, p, 3)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(B, 3, h * p, w * p)

    def _pos_embed_for(self, grid_h: int, grid_w: int, dim: int, trained: torch.Tensor) -> torch.Tensor:
        g = self.cfg.grid_size
        if (grid_h, grid_w) == (g, g):
            return trained
        # another input size: the training grid's positions resampled (exact sin-cos, no resize error)
        return _resampled_sincos(dim, grid_h, grid_w, g).to(trained.device)

    def _embed(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> patch tokens with positions [B, N, D], and the CLS position [1, 1, D]."""
        p = self.cfg.patch_size
        H, W = frames.shape[-2:]
        if H % p or W % p:
            raise ValueError(f"frame size {H}x{W} is not a multiple of the patch size {p}")
        pos = self._pos_embed_for(H // p, W // p, self.cfg.embed_dim, self.pos_embed)
        return self.patch_embed(frames) + pos[:, 1:], pos[:, :1]

    def _run_encoder(self, x: torch.Tensor, cls_pos: torch.Tensor) -> torch.Tensor:
        """[B, L, D] tokens -> [B, 1+L, D]: CLS prepended, transformer blocks, final norm."""
        cls = (self.cls_token + cls_pos).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    # ------------------------------------------------------------------------------------ model
    def forward_encoder(self, f1: torch.Tensor, f2: torch.Tensor, masking: Masking
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """f1, f2 [B, 3, H, W] -> f1 tokens [B, 1+N, D], f2's visible tokens [B, 1+K, D]."""
        t1, cls_pos = self._embed(f1)                              # [B, N, D]
        t2, _ = self._embed(f2)                                    # [B, N, D]
        t2 = gather_tokens(t2, masking.ids_keep)                   # [B, K, D]
        if self.cfg.encoder == "siamese":                          # one encoder, frames apart
            return self._run_encoder(t1, cls_pos), self._run_encoder(t2, cls_pos)
        N = t1.shape[1]                                            # joint: both frames together
        x = self._run_encoder(torch.cat([t1, t2], dim=1), cls_pos)  # [B, 1+N+K, D]
        return x[:, :1 + N], torch.cat([x[:, :1], x[:, 1 + N:]], dim=1)

    def forward_decoder(self, x1: torch.Tensor, x2: torch.Tensor, masking: Masking,
                        grid: tuple[int, int]) -> torch.Tensor:
        """x1 [B, 1+N, D], x2 [B, 1+K, D] -> predicted pixels of every f2 patch [B, N, P].

        grid: the (rows, columns) of patches, N = rows * columns.
        """
        y1 = self.decoder_embed(x1)                                # [B, 1+N, Dd]
        y2 = self.decoder_embed(x2)                                # [B, 1+K, Dd]
        B, K = y2.shape[0], y2.shape[1] - 1
        N = masking.ids_restore.shape[1]
        pos = self._pos_embed_for(*grid, self.cfg.decoder_embed_dim, self.decoder_pos_embed)

        # mask tokens at the hidden positions, then unshuffle back to patch order
        patches = torch.cat([y2[:, 1:], self.mask_token.expand(B, N - K, -1)], dim=1)   # [B, N, Dd]
        patches = gather_tokens(patches, masking.ids_restore)
        y2 = torch.cat([y2[:, :1], patches], dim=1) + pos          # [B, 1+N, Dd]
        y1 = y1 + pos

        if self.cfg.decoder == "joint":                            # self-attention over f1 and f2
            y = torch.cat([y1, y2], dim=1)                         # [B, 2+2N, Dd]
            for blk in self.decoder_blocks:
                y = blk(y)
            y2 = y[:, 1 + N:]
        else:                                                      # cross(-self): f2 queries f1
            for blk in self.decoder_blocks:
                y2 = blk(y2, y1)
        return self.decoder_pred(self.decoder_norm(y2))[:, 1:]     # [B, N, P]

    def patch_targets(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, N, P]: what the decoder learns to predict for each patch, its pixels,
        normalised per patch (minus their mean, over their std) when the config's norm_pix_loss is on."""
        target = self.patchify(frames.float())                     # [B, N, P]
        if self.cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    def forward_loss(self, f2: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error of pred [B, N, P] against f2's patches, over masked patches only."""
        target = self.patch_targets(f2)                            # [B, N, P]
        per_patch = ((pred.float() - target) ** 2).mean(dim=-1)    # [B, N]
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, f1: torch.Tensor, f2: torch.Tensor, mask_ratio: float | None = None,
                masking: Masking | None = None) -> SiamMAEOutput:
        """f1, f2 [B, 3, H, W] (normalised frames, f2 later in the clip) -> loss, pred, mask.

        The mask is drawn from torch's RNG at `mask_ratio` (the config's if None) unless `masking`
        is given.
        """
        if masking is None:
            ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
            if not 0.0 < ratio < 1.0:
                raise ValueError(f"mask_ratio {ratio}: expected 0 < ratio < 1")
            n = (f2.shape[-2] // self.cfg.patch_size) * (f2.shape[-1] // self.cfg.patch_size)
            masking = random_masking(f2.shape[0], n, ratio, device=f2.device)
        grid = (f2.shape[-2] // self.cfg.patch_size, f2.shape[-1] // self.cfg.patch_size)
        x1, x2 = self.forward_encoder(f1, f2, masking)
        pred = self.forward_decoder(x1, x2, masking, grid)
        loss = self.forward_loss(f2, pred, masking.mask)
        return SiamMAEOutput(loss, pred, masking.mask)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch features for evaluation: [B, 3, H, W] -> [B, H/p, W/p, D] after the final norm, no CLS.

        Any H, W divisible by the patch; positions are the training grid's, resampled to the new grid.
        """
        p = self.cfg.patch_size
        tokens, cls_pos = self._embed(frames)
        x = self._run_encoder(tokens, cls_pos)[:, 1:]              # [B, N, D]
        return x.reshape(frames.shape[0], frames.shape[-2] // p, frames.shape[-1] // p, -1)
