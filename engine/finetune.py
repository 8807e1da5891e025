"""Fine-tuning schedules for pretrained towers: layer-wise learning-rate decay and linear probe, then fine-tune.

* Layer-wise LR decay (Clark et al. 2020, "ELECTRA"; Bao et al. 2022, "BEiT"): layer ``l`` of an ``L``-layer tower
  trains at ``encoder_lr * decay ** (L + 1 - l)``; the embeddings are layer 0 and everything after the last block
  (final norm) is layer ``L + 1``, so lower, more general layers move least. ``optim.layer_decay`` (1.0 = off).
* LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"):
  the encoders stay fixed for the first ``train.linear_probe_steps`` optimizer steps while fusion and head fit
  the frozen features, then everything is fine-tuned, so the fine-tune starts from a head that no longer sends
  large random gradients into the pretrained features.
"""

from __future__ import annotations

import re

from torch import nn

ENCODER_PREFIXES = ("text.", "vision.")  # parameter names of the towers inside a MultimodalModel


# Numbered block containers of HF encoders (encoder.layer.N, layers.N) and timm models (blocks.N, stages.N, and
# ResNet's layer1..layer4, numbered from 1).
_BLOCK = re.compile(r"\.(?:(?:layer|layers|blocks|stages)\.(\d+)|layer([1-9]))\.")
# Parameters that sit before the first block: token/patch embeddings, position embeddings, special tokens, stems.
_EMBED = ("embeddings.", "patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token", ".stem", "conv1.",
          "bn1.")


def _tower(name: str) -> str | None:
    return next((p for p in ENCODER_PREFIXES if name.startswith(p)), None)


def encoder_depths(model: nn.Module) -> dict[str, int]:
    """Number of numbered blocks in each encoder tower, e.g. ``{"text.": 6, "vision.": 12}``."""
    depths: dict[str, int] = {}
    for name, _ in model.named_parameters():
        tower, block = _tower(name), _block_index(name)
        if tower and block is not None:
            depths[tower] = max(depths.get(tower, 0), block + 1)
    return depths


def _block_index(name: str) -> int | None:
    match = _BLOCK.search(name)
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) is not None else int(match.group(2)) - 1


def layer_id(name: str, depth: int) -> int:
    """Depth position of an encoder parameter: 0 = embeddings, ``i + 1`` = block ``i``, ``depth + 1`` = after."""
    block = _block_index(name)
    if block is not None:
        return block + 1
    if any(key in name for key in _EMBED):
        return 0
    return depth + 1


def layer_lr_scale(name: str, depths: dict[str, int], decay: float) -> float:
    """LR multiplier of parameter ``name``: ``decay ** (depth + 1 - layer_id)`` in a tower, 1.0 elsewhere."""
    tower = _tower(name)
    if tower is None or decay == 1.0:
        return 1.0
    depth = depths.get(tower, 0)
    return decay ** (depth + 1 - layer_id(name, depth))


def drop_encoder_grads(model: nn.Module) -> int:
    """Linear-probe phase of LP-FT: clear the encoders' gradients so the optimizer leaves them untouched.

    ``AdamW`` skips parameters whose ``.grad`` is None (no update, no weight decay, no moment change). Clearing the
    gradients, rather than toggling ``requires_grad``, keeps the set of parameters that receive gradients fixed,
    which DDP requires. Returns the number of tensors cleared.
    """
    cleared = 0
    for tower in (model.text, model.vision):
        for param in tower.parameters() if tower is not None else ():
            if param.grad is not None:
                param.grad = None
                cleared += 1
    return cleared


def set_train_mode(model: nn.Module, probing: bool) -> None:
    """``model.train()``, except that towers held fixed stay in eval mode: a frozen tower (``freeze: true`` with
    nothing unfrozen) always, and every tower while LP-FT probes. Otherwise their BatchNorm statistics and dropout
    would still move and randomise features that are meant to be fixed (a probe of a CNN tower would not be one).
    """
    model.train()
    for tower in (model.text, model.vision):
        if tower is not None and (probing or not any(p.requires_grad for p in tower.parameters())):
            tower.eval()
