"""AdamW with parameter groups and a warm-up + decay schedule."""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_scheduler

from .finetune import ENCODER_PREFIXES, encoder_depths, layer_lr_scale


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Biases, norm weights and embeddings are not decayed (1-D tensors cover biases, norms, learned tokens)."""
    return param.ndim <= 1 or "embeddings" in name or name.endswith(("pos_embed", "cls_token", "reg_token"))


def param_groups(model: nn.Module, lr: float, encoder_lr: float | None, weight_decay: float,
                 layer_decay: float = 1.0, extras: nn.Module | None = None) -> list[dict]:
    """Groups {encoder, fusion/head, task} x {decay, no decay}; frozen parameters are left out.

    ``model`` is the :class:`MultimodalModel` (its tower parameters are named ``text.*`` / ``vision.*``);
    ``extras`` a task's trainable additions, trained at ``lr`` like the fusion and head. ``layer_decay < 1`` splits
    the encoder groups by depth, each scaled by :func:`engine.finetune.layer_lr_scale`.
    """
    scale_of = lambda name: 1.0  # noqa: E731
    if layer_decay != 1.0:
        depths = encoder_depths(model)
        scale_of = lambda name: layer_lr_scale(name, depths, layer_decay)  # noqa: E731
    named = [("model", n, p) for n, p in model.named_parameters()]
    named += [("task", n, p) for n, p in (extras.named_parameters() if extras is not None else ())]
    groups: dict[tuple[str, bool, float], list] = {}
    for owner, name, param in named:
        if not param.requires_grad:
            continue
        part = "task" if owner == "task" else "encoder" if name.startswith(ENCODER_PREFIXES) else "fusion_head"
        key = (part, no_weight_decay(name, param), scale_of(name) if owner == "model" else 1.0)
        groups.setdefault(key, []).append(param)
    enc_lr = lr if encoder_lr is None else encoder_lr
    return [
        {"params": params, "lr": (enc_lr if part == "encoder" else lr) * scale,
         "weight_decay": 0.0 if no_wd else weight_decay,
         "name": f"{part}{'_no_wd' if no_wd else ''}{f'_x{scale:.3g}' if scale != 1.0 else ''}"}
        for (part, no_wd, scale), params in sorted(groups.items())
    ]


def build_optimizer(model: nn.Module, lr: float, encoder_lr: float | None, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999), layer_decay: float = 1.0,
                    extras: nn.Module | None = None, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`. ``fused``: the single-kernel implementation (CPU and CUDA), which can also
    skip a step on the device (the trainer's non-finite guard uses that to avoid reading the loss every step)."""
    groups = param_groups(model, lr, encoder_lr, weight_decay, layer_decay, extras)
    if not groups:
        raise ValueError("no trainable parameters: every tower is frozen and the fusion/head has no weights")
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=True if fused else None)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup_ratio: float):
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=int(round(warmup_ratio * total_steps)),
                         num_training_steps=total_steps)
