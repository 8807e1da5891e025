"""Zero-shot cross-modal transfer in an aligned image-text space (after ``train.task=contrastive``).

* Head transfer: a linear classifier fitted on one modality's embeddings is applied unchanged to the other's
  (works only as far as the two modalities share one space; Radford et al. 2021 section 3.1 motivates it).
* Prototypes: texts naming each class ("there is a red circle") are embedded; an image takes the class of the
  nearest prototype (CLIP zero-shot classification, Radford et al. 2021).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models import MultimodalModel
from models.folder import TASK_STATE, read_tensors, resolve_model_dir

from .contrastive import AlignmentHeads


def load_aligned(path: str | Path, require_heads: bool = True) -> tuple[MultimodalModel, AlignmentHeads | None]:
    """A model trained with ``train.task=contrastive`` and its alignment projections, frozen, in eval mode.

    Args:
        path: run folder or model directory.
        require_heads: raise if the run has no ``task_state.safetensors``; otherwise return ``None`` heads.
    """
    directory = resolve_model_dir(path)
    model = MultimodalModel.from_pretrained(directory).eval().requires_grad_(False)
    state_file = directory / TASK_STATE
    if not state_file.is_file():
        if require_heads:
            raise FileNotFoundError(f"{state_file} is missing: {str(path)!r} was not trained with "
                                    "train.task=contrastive, so it has no aligned image-text space")
        return model, None
    state = {k.removeprefix("align."): v for k, v in read_tensors(state_file).items() if k.startswith("align.")}
    if "text.weight" not in state or model.text is None or model.vision is None:
        if require_heads:
            raise ValueError(f"{str(path)!r} holds no contrastive alignment projections (align.text.weight)")
        return model, None
    heads = AlignmentHeads(model.text.dim, model.vision.dim, state["text.weight"].shape[0], 0.07)
    heads.load_state_dict(state)
    return model, heads.eval().requires_grad_(False)


@torch.no_grad()
def encode_texts(model: MultimodalModel, heads: AlignmentHeads, tokenizer, texts: list[str],
                 max_length: int = 32) -> Tensor:
    """``len(texts)`` strings -> ``(N, dim)`` normalised embeddings in the aligned space."""
    tok = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    pooled = model.text(tok["input_ids"], tok["attention_mask"]).pooled
    return F.normalize(heads.text(pooled), dim=-1)


def caption_classes(captions: list[str], names: list[str]) -> np.ndarray:
    """Class of each caption: the index of the name (a word, e.g. a colour) it contains, or -1 if none does."""
    out = np.full(len(captions), -1)
    for i, caption in enumerate(captions):
        words = set(caption.lower().split())
        hits = [k for k, name in enumerate(names) if name.lower() in words]
        if len(hits) == 1:
            out[i] = hits[0]
    return out


def prototype_classify(image_emb: Tensor, prototypes: Tensor) -> Tensor:
    """``(N, D)`` image and ``(C, D)`` class-prototype embeddings (normalised) -> ``(N,)`` predicted classes."""
    return (image_emb @ prototypes.t()).argmax(-1)


def transfer_head(train_x: Tensor, train_y: np.ndarray, test_x: Tensor, test_y: np.ndarray,
                  seed: int = 0) -> float:
    """Fit a logistic-regression head on ``train_x`` ``(N, D)`` and return its accuracy on ``test_x`` ``(M, D)``,
    which may come from the other modality."""
    from sklearn.linear_model import LogisticRegression  # imported when a head is fitted (it is slow to import)

    head = LogisticRegression(max_iter=1000, random_state=seed).fit(train_x.numpy(), train_y)
    return float((head.predict(test_x.numpy()) == test_y).mean())


def chance_rate(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class."""
    return float(np.bincount(labels).max() / len(labels))
