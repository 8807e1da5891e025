"""Multilingual knowledge distillation (Reimers & Gurevych 2020, "Making Monolingual Sentence Embeddings
Multilingual using Knowledge Distillation") and translation retrieval, its evaluator.

A frozen teacher text encoder embeds the source sentence ``s``; a student is trained on parallel pairs
``(s, t)`` so that ``student(s) ~ teacher(s)`` and ``student(t) ~ teacher(s)`` (mean squared error). The student
keeps the teacher's vector space for the source language and maps translations into it, so a fusion model trained
on source-language text reads the other languages through the student without seeing a labelled example in them.

The aligned representation is the pooled vector the fusion reads (``ModalityFeatures.pooled``): a source sentence
and its translation have different token counts, so only a sentence-level vector has a target for both. Fusion
methods that read the pooled vectors (``concat``, ``gated``, ``product``, ...) therefore benefit directly;
token-level fusions (``cross_attention``) read token features that this objective does not align.

``train.task=multilingual_distill`` trains it with the engine's loop (``distill_multilingual.py`` sets it up from a
trained run): the model is the teacher run's whole model, of which only the text tower trains; validation is the
fusion model's own classification in every language, so the log shows the zero-shot languages catching up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from data.parallel import ParallelPair, parallel_dataset, read_parallel
from engine.tasks import Task, register_task
from models import MultimodalModel, load_state
from models.folder import read_info, resolve_model_dir
from models.text_encoder import TextEncoder


def embed(encoder: TextEncoder, tokenizer: Any, texts: list[str], max_length: int = 32,
          batch_size: int = 128) -> Tensor:
    """Pooled sentence vectors ``(N, D)`` of ``texts`` (the vector a pooled-input fusion reads)."""
    device = next(encoder.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        out.append(encoder(enc["input_ids"], enc["attention_mask"]).pooled)
    return torch.cat(out)


@torch.no_grad()
def translation_retrieval(encoder: TextEncoder, tokenizer: Any, pairs: list[ParallelPair],
                          max_length: int = 32) -> dict[str, float]:
    """Accuracy of finding each sentence's translation by cosine similarity, per target language.

    For each target language, the distinct source sentences are the queries and the distinct translations the
    candidates; a query is right when its nearest candidate is a translation of it (duplicate sentences in the
    data count once). Chance is ``1 / number of distinct candidates``.

    Returns:
        ``{tgt_lang: accuracy}`` plus ``"mean"`` over languages.
    """
    was_training = encoder.training
    encoder.eval()
    by_lang: dict[str, set[tuple[str, str]]] = {}
    for p in pairs:
        by_lang.setdefault(p.tgt_lang, set()).add((p.src, p.tgt))
    out = {}
    for lang, items in sorted(by_lang.items()):
        srcs = sorted({s for s, _ in items})
        tgts = sorted({t for _, t in items})
        good = {(s, t) for s, t in items}
        sim = F.normalize(embed(encoder, tokenizer, srcs, max_length), dim=-1) @ \
            F.normalize(embed(encoder, tokenizer, tgts, max_length), dim=-1).T
        best = sim.argmax(dim=1).tolist()
        out[lang] = sum((s, tgts[j]) in good for s, j in zip(srcs, best)) / len(srcs)
    out["mean"] = sum(out.values()) / max(1, len(out))
    encoder.train(was_training)
    return out


def pooled_mse(student: TextEncoder, teacher: TextEncoder, batch: dict[str, Any]) -> Tensor:
    """``MSE(student(s), teacher(s)) + MSE(student(t), teacher(s))`` over a batch of pairs: ``input_ids`` /
    ``attention_mask`` hold the sources ``(B, L)``, ``pair_input_ids`` / ``pair_attention_mask`` the translations
    ``(B, L')``; pooled vectors ``(B, D)`` are compared."""
    with torch.no_grad():
        target = teacher(batch["input_ids"], batch["attention_mask"]).pooled.float()
    src = student(batch["input_ids"], batch["attention_mask"]).pooled.float()
    tgt = student(batch["pair_input_ids"], batch["pair_attention_mask"]).pooled.float()
    return F.mse_loss(src, target) + F.mse_loss(tgt, target)


@register_task("multilingual_distill")
class MultilingualDistillTask(Task):
    """Reimers & Gurevych (2020) on a trained fusion model: a frozen copy of its text tower is the teacher, the
    tower itself the student; everything else is frozen and unchanged.

    Trains on parallel sentences (:func:`data.parallel.read_parallel`), not on the configured training split; the
    configured eval split (every language) measures the fusion model with the student tower, and ``language_gap``
    shows what the distillation closed.

    Args:
        teacher: the trained run (its ``config.yaml`` describes the model; the model is initialised from it whole).
        parallel: TSV/JSONL pairs (default ``<data.root>/parallel.tsv``).
        languages: target languages of the pairs to train on (default: all).
    """

    def __init__(self, teacher: str = "", parallel: str | None = None, languages: list[str] | None = None):
        super().__init__()
        if not teacher:
            raise ValueError("multilingual_distill: set train.task_params.teacher to the trained run folder")
        self.teacher_path, self.parallel, self.languages = teacher, parallel, languages

    def pairs(self, cfg: DictConfig) -> list[ParallelPair]:
        return read_parallel(self.parallel or Path(cfg.data.root) / "parallel.tsv", self.languages)

    def train_dataset(self, cfg: DictConfig):
        """The parallel pairs, with the teacher's output space (the model keeps the outputs it was trained for)."""
        info = read_info(resolve_model_dir(self.teacher_path))
        return parallel_dataset(self.pairs(cfg), info["label_names"], info["multi_label"],
                                source=str(self.parallel or Path(cfg.data.root) / "parallel.tsv"))

    def setup(self, model: nn.Module) -> None:
        """The teacher: the trained run's text tower, frozen; only the model's text tower trains."""
        teacher = MultimodalModel.from_pretrained(self.teacher_path)
        if teacher.text is None:
            raise ValueError(f"{self.teacher_path}: fusion {teacher.model_cfg['fusion']['name']!r} has no text tower "
                             "to distil")
        self.teacher = teacher.text.requires_grad_(False).eval()
        for part in (model.vision, model.fusion, model.head):
            if part is not None:
                part.requires_grad_(False)

    def initialise(self, model: nn.Module) -> None:
        """The student starts as the trained run's whole model (the architecture its config describes)."""
        trained = MultimodalModel.from_pretrained(self.teacher_path)
        load_state(model, trained.state_dict(), source=f"{self.teacher_path} (the model to make multilingual)")

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        self.teacher.eval()
        return {"loss": pooled_mse(model.text, self.teacher, batch)}
