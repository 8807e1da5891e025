"""Contrastive image-text alignment (CLIP, Radford et al. 2021): symmetric InfoNCE with a learnable temperature,
and retrieval metrics (R@1/5/10 in both directions).

The task projects each tower's pooled vector into a shared space with its own linear map; the projections and the
temperature are the task's trainable extras (``extras.align``), saved with the run as ``model/task_state.safetensors``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.tasks import Task, register_task

PAIRS = ("positive", "all")


class AlignmentHeads(nn.Module):
    """Per-modality projections into a shared ``dim``-wide space and the CLIP temperature ``log(1/tau)``."""

    def __init__(self, text_dim: int, image_dim: int, dim: int, init_temperature: float):
        super().__init__()
        self.text = nn.Linear(text_dim, dim, bias=False)
        self.image = nn.Linear(image_dim, dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))


def pair_mask(batch: dict[str, Any], pairs: str) -> Tensor:
    """``(B,)`` bool: rows that are real (image, caption) pairs. ``"positive"`` keeps rows whose label is 1 (on the
    shapes benchmark a false statement does not describe its image); ``"all"`` keeps every row with both
    modalities."""
    keep = batch["text_present"].bool() & batch["image_present"].bool()
    if pairs == "positive":
        labels = batch["labels"]
        keep = keep & (labels[:, 1] > 0 if labels.ndim == 2 else labels == 1)
    return keep


def caption_ids(input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``(B, L)`` token ids -> ``(B,)`` int64 hash of each caption (padding ignored): equal captions, equal ids."""
    ids = input_ids.long() * attention_mask.long()
    powers = torch.full_like(ids[0], 1_000_003).cumprod(0) % (2**31 - 1)
    return (ids * powers).sum(-1) % (2**61 - 1)


def clip_loss(text_emb: Tensor, image_emb: Tensor, logit_scale: Tensor, caption: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE over a batch of pairs.

    Args:
        text_emb: ``(B, D)`` L2-normalised caption embeddings.
        image_emb: ``(B, D)`` L2-normalised image embeddings (row i pairs with caption i).
        logit_scale: scalar ``log(1/tau)``; clamped at ``log(100)`` as in CLIP.
        caption: optional ``(B,)`` caption ids; rows with equal captions are all positives for each other (soft
            targets spread evenly), so repeated captions are not pushed apart as false negatives.

    Returns:
        Scalar: mean of the image->text and text->image cross-entropies.
    """
    scale = logit_scale.clamp(max=math.log(100.0)).exp()
    logits = scale * image_emb @ text_emb.t()  # (B_image, B_text)
    if caption is None:
        target = torch.eye(len(logits), device=logits.device)
    else:
        target = (caption[:, None] == caption[None, :]).float()
    target = target / target.sum(-1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target.t()))


def recall_at_k(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor,
                ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries with a correct item among the ``k`` most similar gallery items.

    An item is correct when its caption id equals the query's (with repeated captions, every image of the same
    description is a correct answer, so chance R@1 is the frequency of the query's caption, not 1/N).

    Args:
        query: ``(N, D)`` normalised embeddings; gallery: ``(M, D)``; query_ids ``(N,)``, gallery_ids ``(M,)``.
    """
    top = (query @ gallery.t()).topk(min(max(ks), len(gallery)), dim=-1).indices  # (N, K)
    hit = gallery_ids[top] == query_ids[:, None]
    return {k: hit[:, :k].any(-1).float().mean().item() for k in ks}


@register_task("contrastive")
class ContrastiveTask(Task):
    """CLIP-style alignment of the model's two towers; the fusion module and head are not trained by it (they are
    frozen in :meth:`setup`, so no optimizer state or gradient synchronisation is spent on them).

    Args:
        dim: width of the shared embedding space.
        temperature: initial temperature ``tau`` (learned).
        pairs: ``"positive"`` trains on rows labelled 1 (true) only, ``"all"`` on every row with both modalities.
        dedupe: treat rows with identical captions as positives of each other.
    """

    def __init__(self, dim: int = 128, temperature: float = 0.07, pairs: str = "positive", dedupe: bool = True):
        super().__init__()
        if pairs not in PAIRS:
            raise ValueError(f"contrastive: pairs must be one of {PAIRS}, got {pairs!r}")
        self.dim, self.temperature, self.pairs, self.dedupe = dim, temperature, pairs, dedupe

    def setup(self, model: nn.Module) -> None:
        if model.text is None or model.vision is None:
            raise ValueError("contrastive alignment needs both towers; use a fusion that reads text and image "
                             f"(model.fusion.name=concat), not one reading only {model.modalities}")
        self.extras["align"] = AlignmentHeads(model.text.dim, model.vision.dim, self.dim, self.temperature)
        model.fusion.requires_grad_(False)
        model.head.requires_grad_(False)

    @property
    def heads(self) -> AlignmentHeads:
        return self.extras["align"]

    def calibrate(self, accelerator, model, loader, model_dir) -> None:
        return None  # no decision thresholds: the metrics are retrieval recalls

    def metric_names(self, model: nn.Module) -> set[str]:
        return {f"{d}_r@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)} | {"r@1_mean", "chance_r@1", "n"}

    def embed(self, out: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Model outputs -> normalised ``(B, dim)`` text and image embeddings."""
        return (F.normalize(self.heads.text(out["text"].pooled), dim=-1),
                F.normalize(self.heads.image(out["image"].pooled), dim=-1))

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        keep = pair_mask(batch, self.pairs)
        text, image = self.embed(out)
        caption = caption_ids(batch["input_ids"], batch["attention_mask"])[keep] if self.dedupe else None
        loss = clip_loss(text[keep], image[keep], self.heads.logit_scale, caption)
        return {"loss": loss, "temperature": 1.0 / self.heads.logit_scale.exp().detach(),
                "pairs": keep.sum().float(), "outputs": out}

    @torch.no_grad()
    def embed_loader(self, accelerator, model: nn.Module, loader) -> dict[str, Tensor]:
        """Embeddings of the pair rows of ``loader``, gathered: ``text``, ``image`` ``(N, dim)``, ``caption``,
        ``index`` ``(N,)``."""
        was_training = model.training
        model.eval()
        chunks: dict[str, list[Tensor]] = {"text": [], "image": [], "caption": [], "index": [], "keep": []}
        for batch in loader:
            text, image = self.embed(model(batch))
            values = (text, image, caption_ids(batch["input_ids"], batch["attention_mask"]), batch["index"],
                      pair_mask(batch, self.pairs))
            for key, value in zip(chunks, accelerator.gather_for_metrics(values)):
                chunks[key].append(value.cpu())
        model.train(was_training)
        out = {k: torch.cat(v) for k, v in chunks.items()}
        keep = out.pop("keep")
        return {k: v[keep] for k, v in out.items()}

    def evaluate(self, accelerator, model: nn.Module, loader, **options: Any) -> dict[str, Any]:
        """Retrieval on the pair rows of ``loader``: ``i2t_r@k``, ``t2i_r@k`` (k = 1, 5, 10), ``r@1_mean`` and the
        chance rate of R@1 (``chance_r@1``, the mean frequency of a query's caption)."""
        emb = self.embed_loader(accelerator, model, loader)
        i2t = recall_at_k(emb["image"], emb["text"], emb["caption"], emb["caption"])
        t2i = recall_at_k(emb["text"], emb["image"], emb["caption"], emb["caption"])
        same = (emb["caption"][:, None] == emb["caption"][None, :]).float().mean().item()
        metrics = {f"i2t_r@{k}": v for k, v in i2t.items()} | {f"t2i_r@{k}": v for k, v in t2i.items()}
        return {"overall": {**metrics, "r@1_mean": (i2t[1] + t2i[1]) / 2, "chance_r@1": same,
                            "n": float(len(emb["caption"]))}}
