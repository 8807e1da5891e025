"""Small building blocks shared by the fusion methods: an MLP, token projection, pre-norm attention blocks.

Masks follow the contract of :mod:`fusion.base`: ``(B, N)`` bool, True where a token is real. Attention takes a key
mask; a query row always has at least one valid key because ``fill_missing`` keeps position 0 valid for absent
samples and present samples always have a valid first token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class MLP(nn.Module):
    """Two-layer perceptron ``(..., in_dim) -> (..., out_dim)``: Linear, GELU, dropout, Linear."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TokenProjection(nn.Module):
    """Linear map of token features to the fusion width; padding positions are set to zero.

    Zeroing padding keeps non-finite garbage there (e.g. from an encoder) out of masked sums, where ``0 * nan``
    would still be ``nan``. Shapes: ``(B, N, in_dim)``, ``(B, N)`` -> ``(B, N, dim)``.
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return self.proj(tokens).masked_fill(~mask.bool().unsqueeze(-1), 0.0)


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid tokens: ``(B, N, D)``, ``(B, N)`` -> ``(B, D)``. Padding values never enter the sum."""
    mask = mask.bool()
    total = tokens.masked_fill(~mask.unsqueeze(-1), 0.0).sum(1)
    return total / mask.sum(1, keepdim=True).clamp_min(1).to(tokens.dtype)


class Attention(nn.Module):
    """Multi-head attention of queries ``(B, Nq, D)`` over a context ``(B, Nk, D)`` with key mask ``(B, Nk)``."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, key_mask: Tensor) -> Tensor:
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.kv(context), "b n (two h d) -> two b h n d", two=2, h=self.heads)
        allowed = rearrange(key_mask.bool(), "b n -> b 1 1 n")
        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x), LN(context))`` then ``x + FFN(LN(x))``.

    Self-attention when ``context`` is None (keys are ``x`` itself), cross-attention otherwise.

    Args:
        dim: token width.
        heads: attention heads.
        dropout: dropout on attention weights and on both residual branches.
        cross: build a separate LayerNorm for the context (cross-attention).
        ffn: include the feed-forward sub-layer.
        mlp_ratio: hidden width of the feed-forward sub-layer relative to ``dim``.
    """

    def __init__(
        self, dim: int, heads: int = 4, dropout: float = 0.0, cross: bool = False, ffn: bool = True, mlp_ratio: int = 2
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim) if cross else None
        self.attn = Attention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(dim) if ffn else None
        self.ffn = MLP(dim, mlp_ratio * dim, dim, dropout) if ffn else None

    def forward(self, x: Tensor, key_mask: Tensor, context: Tensor | None = None) -> Tensor:
        """``x`` ``(B, Nq, D)``; ``key_mask`` ``(B, Nk)`` masks ``context`` (or ``x`` when context is None)."""
        h = self.norm(x)
        ctx = h if context is None else self.norm_context(context)
        x = x + self.drop(self.attn(h, ctx, key_mask))
        if self.ffn is not None:
            x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return x


def pooled_projections(text_dim: int, image_dim: int, dim: int) -> tuple[nn.Linear, nn.Linear]:
    """Linear maps bringing the two pooled vectors ``(B, text_dim)``, ``(B, image_dim)`` to a common width."""
    return nn.Linear(text_dim, dim), nn.Linear(image_dim, dim)


def cat_tokens(a: Tensor, a_mask: Tensor, b: Tensor, b_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate two token sequences and their masks along the sequence axis."""
    return torch.cat([a, b], dim=1), torch.cat([a_mask.bool(), b_mask.bool()], dim=1)
