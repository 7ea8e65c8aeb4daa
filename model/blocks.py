"""The decoder blocks timm lacks: cross-attention from f2's tokens to f1's, alone or before self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torch import nn


class CrossAttention(nn.Module):
    """Multi-head attention with queries from x and keys/values from a context sequence."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x [B, Lq, D], context [B, Lk, D] -> [B, Lq, D]."""
        B, Lq, D = x.shape
        Lk = context.shape[1]
        h = self.num_heads
        q = self.q(x).reshape(B, Lq, h, D // h).transpose(1, 2)                 # [B, h, Lq, d]
        k, v = self.kv(context).reshape(B, Lk, 2, h, D // h).permute(2, 0, 3, 1, 4)  # [B, h, Lk, d]
        out = F.scaled_dot_product_attention(q, k, v)                          # [B, h, Lq, d]
        return self.proj(out.transpose(1, 2).reshape(B, Lq, D))


class CrossSelfBlock(nn.Module):
    """SiamMAE's decoder block (pre-norm): cross-attention to f1, self-attention over f2, MLP.

    With `self_attention=False` it is the `cross` ablation: cross-attention and MLP only.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 self_attention: bool = True) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim, eps=1e-6)
        self.norm_kv = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias=qkv_bias)
        if self_attention:
            self.norm_self = nn.LayerNorm(dim, eps=1e-6)
            self.self_attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)   # SDPA inside
        else:
            self.norm_self = self.self_attn = None
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: f2 tokens [B, L2, D]; context: f1 tokens [B, L1, D] -> updated f2 tokens [B, L2, D]."""
        x = x + self.cross_attn(self.norm_q(x), self.norm_kv(context))
        if self.self_attn is not None:
            x = x + self.self_attn(self.norm_self(x))
        return x + self.mlp(self.norm_mlp(x))
