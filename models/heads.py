"""Prediction heads on top of a fused representation."""

from __future__ import annotations

from torch import Tensor, nn


class ClassificationHead(nn.Module):
    """``(B, in_dim)`` -> ``(B, num_outputs)`` logits: a linear layer, or an MLP when ``hidden > 0``."""

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(hidden, num_outputs),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
