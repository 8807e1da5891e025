"""Spherical linear interpolation of two models' weights (Shoemake 1985; popular for LLM merges via mergekit)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_merge_method


@register_merge_method("slerp", num_models=2)
def slerp(tensors: list[Tensor], base: Tensor | None = None, t: float = 0.5, eps: float = 1e-4) -> Tensor:
    """Interpolate along the great circle between two flattened weight tensors.

    ``slerp(a, b; t) = sin((1-t) Omega) / sin(Omega) * a + sin(t Omega) / sin(Omega) * b`` with ``Omega`` the angle
    between ``a`` and ``b``. When they are nearly colinear (``|cos Omega| > 1 - eps``) or one is zero, the formula
    is numerically unstable and the method falls back to linear interpolation ``(1-t) a + t b``.

    Args:
        tensors: exactly two tensors ``[a, b]`` of shape ``(*S)``.
        base: unused.
        t: interpolation position; 0 returns ``a``, 1 returns ``b``.
        eps: colinearity tolerance of the linear fallback.

    Returns:
        ``(*S)`` float32 tensor.
    """
    if len(tensors) != 2:
        raise ValueError(f"slerp merges exactly two models, got {len(tensors)}")
    a, b = tensors[0].float(), tensors[1].float()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return torch.lerp(a, b, t)
    cos = torch.clamp((a.flatten() @ b.flatten()) / (na * nb), -1.0, 1.0).item()
    if abs(cos) > 1.0 - eps:
        return torch.lerp(a, b, t)
    omega = math.acos(cos)
    so = math.sin(omega)
    return (math.sin((1.0 - t) * omega) / so) * a + (math.sin(t * omega) / so) * b
