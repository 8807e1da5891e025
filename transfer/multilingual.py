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
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from models.text_encoder import TextEncoder


@dataclass(frozen=True)
class ParallelPair:
    src: str
    tgt: str
    src_lang: str = ""
    tgt_lang: str = ""


_SRC_KEYS, _TGT_KEYS = ("src_text", "src", "source"), ("tgt_text", "tgt", "target", "translation")


def _pick(row: dict, keys: tuple[str, ...], path: Path, line: int) -> str:
    for key in keys:
        if row.get(key):
            return str(row[key])
    raise ValueError(f"{path}:{line}: no sentence under any of {keys}; each row needs a source and a translation "
                     "(TSV header or JSON keys src_text/tgt_text, or src/tgt)")


def read_parallel(path: str | Path, target_languages: list[str] | None = None) -> list[ParallelPair]:
    """Read sentence pairs from a TSV (header row) or JSONL file.

    Columns / keys: ``src_text`` and ``tgt_text`` (or ``src`` / ``tgt``), optionally ``src_lang`` and ``tgt_lang``.
    The embedded shapes benchmark writes ``<root>/parallel.tsv`` in this format (English source).

    Args:
        path: ``.tsv`` / ``.txt`` (tab-separated) or ``.jsonl``.
        target_languages: keep only pairs whose ``tgt_lang`` is one of these (None: all).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parallel data {str(path)!r} does not exist (a TSV with header "
                                "src_lang, src_text, tgt_lang, tgt_text, or JSONL with the same keys)")
    rows: list[tuple[int, dict]] = []
    with open(path, encoding="utf-8", newline="") as f:
        if path.suffix == ".jsonl":
            rows = [(i + 1, json.loads(line)) for i, line in enumerate(f) if line.strip()]
        else:
            rows = [(i + 2, row) for i, row in enumerate(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))]
    pairs = [ParallelPair(_pick(r, _SRC_KEYS, path, i), _pick(r, _TGT_KEYS, path, i), r.get("src_lang") or "",
                          r.get("tgt_lang") or "") for i, r in rows]
    if target_languages is not None:
        pairs = [p for p in pairs if p.tgt_lang in set(target_languages)]
    if not pairs:
        raise ValueError(f"{path} holds no sentence pairs" + (f" with tgt_lang in {target_languages}"
                                                              if target_languages is not None else ""))
    return pairs


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


def distillation_loss(student: TextEncoder, teacher: TextEncoder, tokenizer: Any, pairs: list[ParallelPair],
                      max_length: int = 32) -> Tensor:
    """``MSE(student(s), teacher(s)) + MSE(student(t), teacher(s))`` over a batch of pairs."""
    src, tgt = [p.src for p in pairs], [p.tgt for p in pairs]
    with torch.no_grad():
        target = embed(teacher, tokenizer, src, max_length, len(src))
    return (F.mse_loss(embed(student, tokenizer, src, max_length, len(src)), target)
            + F.mse_loss(embed(student, tokenizer, tgt, max_length, len(tgt)), target))


def distill_multilingual(teacher: TextEncoder, student: TextEncoder, tokenizer: Any, pairs: list[ParallelPair],
                         steps: int = 300, batch_size: int = 32, lr: float = 5e-4, max_length: int = 32,
                         seed: int = 0, log_every: int = 50) -> list[float]:
    """Train ``student`` in place on ``pairs`` for ``steps`` AdamW steps; the teacher is frozen.

    Returns:
        The loss of every step.
    """
    teacher.eval().requires_grad_(False)
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the student text encoder has no trainable parameters (is model.text.freeze set?)")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    losses = []
    for step in range(1, steps + 1):
        loss = distillation_loss(student, teacher, tokenizer, rng.sample(pairs, min(batch_size, len(pairs))),
                                 max_length)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps):
            print(f"distill step {step}/{steps}: mse {loss.item():.5f}")
    student.eval()
    return losses


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
