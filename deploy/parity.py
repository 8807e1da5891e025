"""Agreement of an exported model with the PyTorch float model on real batches of the run's eval split."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from models import MultimodalModel

from .folder import load_for_inference
from .onnx_export import ATOL


def real_batches(run_dir: str | Path, n: int, batch_size: int | None = None) -> list[dict[str, Tensor]]:
    """The first ``n`` batches of the run's eval split (or test split), preprocessed as in evaluation."""
    from engine.builders import build_dataset, build_loader, build_tokenizer
    from engine.config import load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", [])
    split = cfg.data.eval_split or cfg.data.test_split
    dataset = build_dataset(cfg, split)
    tokenizer = build_tokenizer(cfg, run_dir / "model")
    model_cfg = MultimodalModel.from_pretrained(run_dir).image_data_config
    loader = build_loader(cfg, dataset, tokenizer, model_cfg, False, dataset.languages, batch_size)
    return list(islice(loader, n))


@torch.no_grad()
def paired_logits(a: torch.nn.Module, b: torch.nn.Module, batches: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
    """Logits ``(N, C)`` of ``a`` and of ``b`` over all ``batches``, the modality flags as given."""
    pairs = [(a(batch)["logits"], b(batch)["logits"]) for batch in batches]
    return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


def max_logit_difference(a: torch.nn.Module, b: torch.nn.Module, batches: list[dict[str, Tensor]]) -> float:
    """Largest ``|logits_a - logits_b|`` over ``batches``."""
    x, y = paired_logits(a, b, batches)
    return float((x - y).abs().max())


def onnx_parity(run_dir: str | Path, export_dir: str | Path, n_batches: int = 2,
                atol: float | None = ATOL) -> dict[str, Any]:
    """Max logit difference and prediction agreement between an ONNX export and PyTorch eager on ``n_batches``
    real batches; ``ok`` says whether the difference is within ``atol`` (None for int8 graphs, which are not meant
    to match float logits to a tolerance: their cost is measured as accuracy)."""
    batches = real_batches(run_dir, n_batches)
    exported, reference = load_for_inference(export_dir), MultimodalModel.from_pretrained(run_dir).eval()
    x, y = paired_logits(exported, reference, batches)
    diff = float((x - y).abs().max())
    out = {"max_abs_logit_diff": diff, "prediction_agreement": float((x.argmax(-1) == y.argmax(-1)).float().mean()),
           "batches": len(batches), "examples": len(x)}
    if atol is not None:
        out.update(atol=atol, ok=diff <= atol)
    return out
