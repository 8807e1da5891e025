"""Pruning: magnitude (unstructured) and structured (whole output rows), with an optional short fine-tune.

* ``magnitude``: in each pruned ``nn.Linear``, the ``sparsity`` fraction of weights smallest in absolute value are
  zeroed (layer-wise magnitude pruning; Han et al., 2015, "Learning both Weights and Connections for Efficient
  Neural Networks").
* ``structured``: in each pruned ``nn.Linear``, the ``sparsity`` fraction of output rows (neurons) with the
  smallest L2 norm are zeroed together with their bias entries, so the layer's output unit is removed
  (Li et al., 2017, "Pruning Filters for Efficient ConvNets", applied to rows of linear layers).

Layers producing the logits (``out_features == num_outputs``) are never pruned: a zeroed row would silence a class.
The result is a normal ``save_pretrained`` folder whose weights contain exact zeros; ``export.json`` records the
sparsity achieved per layer. The recovery fine-tune reuses the training engine on the run's own config, with the
pruning masks applied to the gradients so pruned weights stay exactly zero under AdamW.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models import MultimodalModel, load_state

from .registry import register_export

METHODS = ("magnitude", "structured")
PARTS = ("text", "vision", "fusion", "head")


def prunable_layers(model: MultimodalModel, parts: tuple[str, ...] = PARTS) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers of ``parts`` that pruning may touch (all but those producing logits)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"cannot prune {unknown}: the parts of a model are {', '.join(PARTS)}")
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)
            and name.split(".")[0] in parts and m.out_features != model.num_outputs}


def pruning_mask(weight: Tensor, sparsity: float, method: str) -> Tensor:
    """A 0/1 mask with the shape of ``weight`` ``(out, in)`` keeping the ``1 - sparsity`` largest weights or rows."""
    if method == "magnitude":
        k = int(round(sparsity * weight.numel()))
        if k == 0:
            return torch.ones_like(weight)
        threshold = weight.abs().flatten().kthvalue(k).values
        return (weight.abs() > threshold).to(weight.dtype)
    if method == "structured":
        k = int(round(sparsity * weight.shape[0]))
        keep = torch.ones(weight.shape[0], dtype=weight.dtype, device=weight.device)
        if k:
            keep[weight.norm(dim=1).argsort()[:k]] = 0
        return keep[:, None].expand_as(weight).clone()
    raise ValueError(f"unknown pruning method {method!r}; valid: {', '.join(METHODS)}")


@torch.no_grad()
def prune_model(model: MultimodalModel, sparsity: float, method: str = "magnitude",
                parts: tuple[str, ...] = PARTS) -> dict[str, Tensor]:
    """Zero weights in place; returns the mask of each pruned layer's weight, by layer name."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    masks = {}
    for name, layer in prunable_layers(model, parts).items():
        masks[name] = pruning_mask(layer.weight, sparsity, method)
        layer.weight.mul_(masks[name])
        if method == "structured" and layer.bias is not None:
            layer.bias.mul_(masks[name][:, 0])
    return masks


def sparsity_report(model: MultimodalModel, names: list[str]) -> dict[str, Any]:
    """Fraction of exact zeros in each named layer's weight, and over all of them."""
    modules = dict(model.named_modules())
    per_layer = {n: round(float((modules[n].weight == 0).float().mean()), 4) for n in names}
    zeros = sum(int((modules[n].weight == 0).sum()) for n in names)
    total = sum(modules[n].weight.numel() for n in names)
    return {"overall": round(zeros / max(1, total), 4), "per_layer": per_layer}


def recover(model: MultimodalModel, masks: dict[str, Tensor], source: Path, steps: int, out_dir: Path,
            overrides: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune the pruned ``model`` for ``steps`` steps on its run's training data, masks held, in place.

    Args:
        model: the pruned model (its weights are loaded into the engine's model, trained, and copied back).
        masks: pruning masks by layer name, from :func:`prune_model`.
        source: the run folder (its ``config.yaml`` gives data, task and optimiser).
        steps: optimiser steps.
        out_dir: the export folder; the fine-tune's ``log.jsonl`` is kept there as ``finetune_log.jsonl``.
        overrides: extra dotted config overrides (``optim.lr=1e-4``, ...).
    """
    from engine.config import load_config
    from engine.trainer import Trainer

    if not (source / "config.yaml").is_file():
        raise FileNotFoundError(f"the recovery fine-tune needs the run's config: {source / 'config.yaml'} does not "
                                "exist (pass a run folder written by train.py, or --finetune-steps 0)")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(source / "config.yaml", [
            f"train.max_steps={steps}", "train.eval_every=0", "train.save_every=0", "train.init_from=null",
            f"run.output_dir={tmp}", "run.name=finetune", "run.tracker=none", "run.overwrite=true",
            *(overrides or [])])
        trainer = Trainer(cfg)
        target = trainer.model
        load_state(target, model.state_dict(), source="pruned model")
        modules = dict(target.named_modules())
        for name, mask in masks.items():  # zero gradient => AdamW never moves a pruned weight (decay of 0 is 0)
            modules[name].weight.register_hook(lambda grad, mask=mask: grad * mask)
        results = trainer.fit()
        shutil.copy(Path(tmp) / "finetune" / "log.jsonl", out_dir / "finetune_log.jsonl")
        load_state(model, {k: v.detach().cpu() for k, v in target.state_dict().items()}, source="fine-tuned model")
    with torch.no_grad():  # exact zeros whatever the optimiser did
        for name, mask in masks.items():
            dict(model.named_modules())[name].weight.mul_(mask)
    val = results["results"].get("val", {}).get("overall", {})
    return {"steps": steps, "val_accuracy_after": val.get("accuracy"), "overrides": list(overrides or [])}


@register_export("pruned")
class PrunedExport:
    """Float weights with exact zeros, saved with ``save_pretrained``."""

    @staticmethod
    def export(model: MultimodalModel, out_dir: Path, source: Path, sparsity: float = 0.5,
               method: str = "magnitude", parts: tuple[str, ...] = PARTS, finetune_steps: int = 0,
               finetune_overrides: list[str] | None = None, tokenizer: Any = None, **_: Any) -> dict[str, Any]:
        masks = prune_model(model, sparsity, method, tuple(parts))
        details: dict[str, Any] = {"method": method, "target_sparsity": sparsity, "parts": list(parts),
                                   "unit": "weights" if method == "magnitude" else "output rows (+ bias entries)"}
        if finetune_steps > 0:
            details["finetune"] = recover(model, masks, Path(source), finetune_steps, out_dir, finetune_overrides)
        details["sparsity"] = sparsity_report(model, list(masks))
        model.save_pretrained(out_dir)
        return details

    @staticmethod
    def load(directory: Path, manifest: dict[str, Any]) -> MultimodalModel:
        return MultimodalModel.from_pretrained(directory)
