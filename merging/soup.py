"""Greedy soup (Wortsman et al. 2022, "Model soups", Algorithm 1): add a model to the uniform average only if
held-out accuracy improves.

Models are ranked by their own held-out score; the soup starts as the best one and each next candidate is kept
only if the uniform average of the soup plus it scores strictly higher. So the soup never scores below the best
single model on the held-out set it was selected on (it can on other data: report a separate test split).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open
from torch import Tensor

from models import MultimodalModel, load_state

from .checkpoints import Checkpoint, plan


@dataclass
class SoupResult:
    state: dict[str, Tensor]  # the soup's weights (reference dtypes)
    chosen: list[str]  # the models in the soup, in the order they were added
    scores: dict[str, float]  # each model's own held-out score
    history: list[dict] = field(default_factory=list)  # one row per candidate: model, score, kept
    score: float = 0.0  # the soup's held-out score


def _load(ckpt: Checkpoint) -> dict[str, Tensor]:
    with safe_open(str(ckpt.weights), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def greedy_soup(models: list[str | Path], score: Callable[[MultimodalModel], float]) -> SoupResult:
    """Build a greedy soup of saved models that share one architecture.

    Memory: the running sum of the soup, one candidate and one model object, whatever the number of models.

    Args:
        models: saved model or run folders (same architecture and label set; checked tensor by tensor).
        score: held-out score of a model, higher is better (e.g. validation accuracy).

    Returns:
        A :class:`SoupResult`; write it with :func:`merging.checkpoints.save_merged`.
    """
    ckpts = [Checkpoint.open(m) for m in models]
    plan(ckpts[0], ckpts, {})
    model = MultimodalModel.from_pretrained(ckpts[0].model_dir)
    floating = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    scores: dict[str, float] = {}
    for c in ckpts:  # each model's own score, loading one at a time into the same model object
        load_state(model, _load(c), source=str(c.model_dir))
        scores[str(c.model_dir)] = float(score(model))
    order = sorted(ckpts, key=lambda c: -scores[str(c.model_dir)])
    total = {k: v.float() if k in floating else v for k, v in _load(order[0]).items()}  # running sum
    chosen, best = [str(order[0].model_dir)], scores[str(order[0].model_dir)]
    history = [{"model": chosen[0], "score": best, "kept": True}]
    for cand in order[1:]:
        n = len(chosen) + 1
        with safe_open(str(cand.weights), framework="pt") as f:
            trial = {k: (total[k] + f.get_tensor(k).float()) / n if k in floating else total[k] for k in total}
        load_state(model, trial, source=f"soup + {cand.model_dir}")
        value = float(score(model))
        kept = value > best
        history.append({"model": str(cand.model_dir), "score": value, "kept": kept})
        if kept:
            with safe_open(str(cand.weights), framework="pt") as f:
                for k in floating:
                    total[k].add_(f.get_tensor(k).float())
            chosen.append(str(cand.model_dir))
            best = value
        del trial
    ref = model.state_dict()
    state = {k: (total[k] / len(chosen)).to(ref[k].dtype) if k in floating else total[k] for k in total}
    return SoupResult(state=state, chosen=chosen, scores=scores, history=history, score=best)


__all__ = ["SoupResult", "greedy_soup"]
