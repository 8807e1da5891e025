"""Contrastive image-text alignment (CLIP, Radford et al. 2021): symmetric InfoNCE with a learnable temperature,
and retrieval metrics (R@1/5/10 in both directions).

The task projects each tower's pooled vector into a shared space with its own linear map; the projections and the
temperature are the task's trainable extras (``extras.align``), saved with the run as ``model/task_state.safetensors``.

Negatives come from the global batch: under ``accelerate launch`` with ``W`` processes of ``B`` rows each, every
caption is scored against the images of all ``W * B`` rows (and vice versa), as CLIP trains, so the objective does
not change with the number of processes. ``negatives`` chooses how (the design of open_clip's ``ClipLoss``, whose
``gather_with_grad`` and ``local_loss`` switches these mirror):

* ``global`` (default): every process gathers all embeddings and computes the whole ``(N, N)`` similarity matrix.
* ``global_rows``: every process scores only its own rows against all ``N`` columns (``(n_r, N)``, open_clip's
  ``local_loss``): ``W`` times less memory and compute for the logits, the same loss and gradients.
* ``process``: each process's own batch only (``(n_r, n_r)``), the objective before negatives were gathered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import choice
from engine.tasks import Task, register_task

from .gather import all_gather_rows, mean_over_processes, world

PAIRS = ("positive", "all")
Negatives = choice("Negatives", "global", "global_rows", "process")


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


@dataclass
class PairBatch:
    """The pairs one process scores: query rows (its own, or all of them) against every gallery column.

    Attributes:
        text, image: ``(n, D)`` query embeddings; ``caption``: ``(n,)`` caption ids or None.
        all_text, all_image: ``(N, D)`` columns of the similarity matrix; ``all_caption``: ``(N,)`` or None.
        offset: the column of query row 0's own pair (queries ``i`` pairs with column ``offset + i``).
        share: True when the queries are this process's rows only, so the loss is its share of the global mean.
    """

    text: Tensor
    image: Tensor
    caption: Tensor | None
    all_text: Tensor
    all_image: Tensor
    all_caption: Tensor | None
    offset: int = 0
    share: bool = False

    @property
    def total(self) -> int:
        """``N``: the pairs the loss averages over (the effective contrastive batch)."""
        return len(self.all_text)


def parse_negatives(value: str, where: str) -> Negatives:
    """``value`` as a :data:`Negatives` member; anything else is an error listing the valid ones."""
    try:
        return Negatives(value)
    except ValueError:
        raise ValueError(f"{where}: negatives must be one of {[m.value for m in Negatives]}, got {value!r}") from None


def gather_pairs(text_emb: Tensor, image_emb: Tensor, caption: Tensor | None = None,
                 negatives: str = "global") -> PairBatch:
    """Gather this process's pairs with every other process's (differentiably) as ``negatives`` says.

    Args:
        text_emb, image_emb: ``(n_r, D)`` this process's pairs (``n_r`` may differ between processes).
        caption: optional ``(n_r,)`` caption ids.
        negatives: ``global``, ``global_rows`` or ``process`` (see the module docstring).
    """
    negatives = parse_negatives(negatives, "gather_pairs")
    if negatives == "process" or world()[1] == 1:
        return PairBatch(text_emb, image_emb, caption, text_emb, image_emb, caption)
    (all_text, all_image, all_caption), rows = all_gather_rows(text_emb, image_emb, caption)
    if negatives == "global":
        return PairBatch(all_text, all_image, all_caption, all_text, all_image, all_caption)
    return PairBatch(text_emb, image_emb, caption, all_text, all_image, all_caption, rows.start, share=True)


def info_nce(pairs: PairBatch, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE (CLIP) of ``pairs``: half the sum of the image->text and the text->image cross-entropy,
    each averaged over all ``N`` pairs; see :func:`clip_loss`. With ``pairs.share`` this process holds its rows'
    part and the result is :func:`~transfer.gather.mean_over_processes` of it (value: the global loss)."""
    scale = logit_scale.clamp(max=math.log(100.0)).exp()
    if pairs.caption is None:
        target = torch.arange(len(pairs.text), device=pairs.text.device) + pairs.offset  # (n,) column of the pair
    else:
        same = (pairs.caption[:, None] == pairs.all_caption[None, :]).float()  # (n, N)
        target = same / same.sum(-1, keepdim=True)
    image_to_text = F.cross_entropy(scale * pairs.image @ pairs.all_text.t(), target, reduction="sum")  # (n, N)
    text_to_image = F.cross_entropy(scale * pairs.text @ pairs.all_image.t(), target, reduction="sum")  # (n, N)
    total = 0.5 * (image_to_text + text_to_image)
    return mean_over_processes(total, len(pairs.text)) if pairs.share else total / pairs.total


def clip_loss(text_emb: Tensor, image_emb: Tensor, logit_scale: Tensor, caption: Tensor | None = None,
              negatives: str = "global") -> Tensor:
    """Symmetric InfoNCE over the pairs of every process (Radford et al. 2021).

    Args:
        text_emb: ``(B, D)`` L2-normalised caption embeddings of this process.
        image_emb: ``(B, D)`` L2-normalised image embeddings (row i pairs with caption i).
        logit_scale: scalar ``log(1/tau)``; clamped at ``log(100)`` as in CLIP.
        caption: optional ``(B,)`` caption ids; rows with equal captions are all positives for each other (soft
            targets spread evenly), so repeated captions are not pushed apart as false negatives.
        negatives: ``global`` / ``global_rows`` score against the ``N = sum_r B_r`` pairs of all processes (equal
            values and, after DDP's gradient averaging, equal gradients to one process on the concatenated batch);
            ``process`` against this process's ``B`` only. The same with one process.

    Returns:
        Scalar: mean of the image->text and text->image cross-entropies.
    """
    return info_nce(gather_pairs(text_emb, image_emb, caption, negatives), logit_scale)


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
        negatives: ``"global"`` (default): each pair is contrasted with the pairs of every process, ``N = W * B``
            with ``W`` processes of batch ``B`` (train.batch_size); ``"global_rows"``: the same loss with each
            process computing only its rows of the similarity matrix (less memory); ``"process"``: with its own
            process's ``B`` pairs only (the loss then depends on the number of processes).
    """

    def __init__(self, dim: int = 128, temperature: float = 0.07, pairs: str = "positive", dedupe: bool = True,
                 negatives: str = "global"):
        super().__init__()
        if pairs not in PAIRS:
            raise ValueError(f"contrastive: pairs must be one of {PAIRS}, got {pairs!r}")
        self.negatives = parse_negatives(negatives, "contrastive")
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
        pairs = gather_pairs(text[keep], image[keep], caption, self.negatives)
        loss = info_nce(pairs, self.heads.logit_scale)
        # pairs: the effective contrastive batch (N over all processes, or this process's own with "process")
        return {"loss": loss, "temperature": 1.0 / self.heads.logit_scale.exp().detach(),
                "pairs": torch.tensor(float(pairs.total), device=loss.device), "outputs": out}

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
