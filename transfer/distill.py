"""Distillation tasks: a frozen teacher (a trained crossfuse model) supervises the model being trained.

* ``distill`` — same task, another architecture (Hinton et al. 2015; FitNets, Romero et al. 2015): the student
  matches the teacher's softened logits and, optionally, its fused features through a learned projection.
* ``crossmodal_distill`` — supervision transfer across modalities (Gupta, Hoffman & Malik 2016, "Cross Modal
  Distillation for Supervision Transfer"): through paired data, the student's image embedding learns to match
  the teacher's embedding of the paired text, so the image tower inherits the teacher's text space without labels.

Teachers are loaded with ``MultimodalModel.from_pretrained``, frozen, kept in eval mode, run under ``no_grad`` and
moved to the training device with the task (:meth:`engine.tasks.Task.place`). ``cache=True`` keeps teacher outputs
per dataset row (valid only without random augmentation, since the teacher would see other pixels each epoch).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.tasks import Task, classification_loss, register_task
from models import MultimodalModel

from .contrastive import PAIRS, AlignmentHeads, caption_ids, pair_mask, recall_at_k
from .gather import mean_over_processes
from .losses import feature_kd, logit_kd
from .zero_shot import load_aligned


def load_teacher(path: str) -> MultimodalModel:
    """A trained model (run folder or model directory), frozen and in eval mode."""
    teacher = MultimodalModel.from_pretrained(path)
    teacher.requires_grad_(False)
    return teacher.eval()


def check_same_inputs(student: MultimodalModel, teacher: MultimodalModel, path: str) -> None:
    """The teacher sees the student's batches, so both must preprocess images and text the same way."""
    if student.vision is not None and teacher.vision is not None:
        s, t = student.image_data_config, teacher.image_data_config
        for key in ("input_size", "mean", "std"):
            if tuple(s[key]) != tuple(t[key]):
                raise ValueError(f"teacher {path!r} expects image {key}={tuple(t[key])} but the student gets "
                                 f"{tuple(s[key])}; set data.image_size / data.mean / data.std so both match")
    if student.text is not None and teacher.text is not None:
        sv, tv = student.text.hf_config.vocab_size, teacher.text.hf_config.vocab_size
        if sv != tv:
            raise ValueError(f"teacher {path!r} has a text vocabulary of {tv} but the student's tokenizer has {sv}; "
                             "train both on the same dataset tokenizer (or set model.text.tokenizer)")


class _TeacherTask(Task):
    """Holds a frozen teacher (a submodule of the task, so :meth:`Task.place` moves it to the training device) and
    optionally caches its outputs by dataset row.

    The cache looks rows up by index on the host, so with ``cache=True`` each step reads the batch's row indices
    back from the device; without it the teacher runs on every batch and nothing is read.
    """

    teacher: MultimodalModel

    def __init__(self, teacher: str, cache: bool = False):
        super().__init__()
        if not teacher:
            raise ValueError(f"{self.task_name}: set train.task_params.teacher to a trained run folder")
        self.teacher_path, self.cache = teacher, cache
        self._cache: dict[int, Tensor] = {}

    @torch.no_grad()
    def teacher_outputs(self, batch: dict[str, Any]) -> Tensor:
        """``(B, ...)`` teacher targets for the batch, from the cache where possible."""
        if not self.cache:
            self.teacher.eval()
            return self.compute_targets(batch).float()
        index = batch["index"].tolist()
        if all(i in self._cache for i in index):
            return torch.stack([self._cache[i] for i in index]).to(batch["index"].device)
        self.teacher.eval()  # stays in eval mode even if someone called .train() on everything
        targets = self.compute_targets(batch).float()
        self._cache.update({i: t.cpu() for i, t in zip(index, targets)})
        return targets

    def compute_targets(self, batch: dict[str, Any]) -> Tensor:  # pragma: no cover
        raise NotImplementedError


def labelled_rows(index: Tensor, fraction: float) -> Tensor:
    """``(B,)`` bool: whether each dataset row (by its ``index``) belongs to the labelled ``fraction`` of the rows.

    A multiplicative hash of the row index (Knuth's 2654435761) spread over [0, 1): a fixed subset that needs no
    state, the same in every epoch, process and resumed run.
    """
    return (index.long() * 2654435761) % 2**32 < int(fraction * 2**32)


@register_task("distill")
class DistillTask(_TeacherTask):
    """Knowledge distillation from a trained model with the same outputs (any architecture or fusion).

    ``loss = (1 - alpha) * CE(student, labels) + alpha * logit_kd(student, teacher, T)
    + feature_weight * feature_kd(student.features, teacher.features, projection)``.

    Args:
        teacher: run folder or model directory of the trained teacher.
        temperature: softmax temperature ``T`` of :func:`logit_kd`.
        alpha: weight of the distillation term; ``0`` trains on labels alone (the "student alone" baseline).
        feature_weight: weight of feature (fused representation) matching; a linear projection is learned when
            the widths differ.
        cache: keep the teacher's outputs per dataset row (no augmentation only).
        labelled_fraction: the share of training rows whose labels the student may use (a fixed pseudo-random
            subset of dataset rows, the same in every epoch and process): the cross-entropy term averages over those
            rows only, the distillation terms over every row. Below 1 the other rows are an unlabelled transfer set,
            the setting where a teacher adds what labels cannot; ``alpha: 0`` with the same fraction is the student
            trained on the labelled rows alone.
    """

    def __init__(self, teacher: str = "", temperature: float = 2.0, alpha: float = 0.5, feature_weight: float = 0.0,
                 cache: bool = False, labelled_fraction: float = 1.0):
        super().__init__(teacher, cache)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distill: alpha must be in [0, 1], got {alpha}")
        if not 0.0 < labelled_fraction <= 1.0:
            raise ValueError(f"distill: labelled_fraction must be in (0, 1], got {labelled_fraction}")
        self.temperature, self.alpha, self.feature_weight = temperature, alpha, feature_weight
        self.labelled_fraction = labelled_fraction

    def setup(self, model: nn.Module) -> None:
        self.teacher = load_teacher(self.teacher_path)
        check_same_inputs(model, self.teacher, self.teacher_path)
        if self.teacher.num_outputs != model.num_outputs:
            raise ValueError(f"teacher {self.teacher_path!r} has {self.teacher.num_outputs} outputs, the student "
                             f"{model.num_outputs}; distil on the dataset the teacher was trained on")
        widths = (model.fusion.out_dim, self.teacher.fusion.out_dim)
        if self.feature_weight > 0 and widths[0] != widths[1]:
            self.extras["projection"] = nn.Linear(*widths)

    def compute_targets(self, batch: dict[str, Any]) -> Tensor:
        out = self.teacher(batch)
        # logits then features in one tensor, so one cache serves both
        return torch.cat([out["logits"], out["features"]], -1) if self.feature_weight > 0 else out["logits"]

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        target = self.teacher_outputs(batch)
        n = out["logits"].shape[-1]
        multi = batch["labels"].ndim == 2
        if self.labelled_fraction < 1.0:
            keep = labelled_rows(batch["index"], self.labelled_fraction).float()
            per_row = classification_loss(out["logits"], batch["labels"], reduction="none")
            # the labelled rows differ per process: a mean over all of them, not a mean of per-process means
            ce = mean_over_processes((per_row * keep).sum(), keep.sum())
        else:
            ce = classification_loss(out["logits"], batch["labels"])
        kd = logit_kd(out["logits"], target[:, :n], self.temperature, multi_label=multi)
        loss = (1 - self.alpha) * ce + self.alpha * kd
        result = {"ce": ce.detach(), "kd": kd.detach()}
        if self.feature_weight > 0:
            feat = feature_kd(out["features"], target[:, n:], self.extras["projection"]
                              if "projection" in self.extras else None)
            loss = loss + self.feature_weight * feat
            result["feature_kd"] = feat.detach()
        return {"loss": loss, **result, "outputs": out}


@register_task("crossmodal_distill")
class CrossModalDistillTask(_TeacherTask):
    """The student's image tower learns the teacher's text embedding of the paired caption (no labels used).

    Teacher space: the teacher's aligned text embedding when the teacher run was trained with
    ``train.task=contrastive`` (its ``task_state.safetensors`` holds the projections), else its text tower's
    pooled vector; both L2-normalised. Student: ``normalize(projection(image.pooled))``, trained with
    :func:`feature_kd` (MSE of unit vectors, i.e. ``2 - 2 cos``), averaged over the paired rows of every process
    (:func:`~transfer.gather.mean_over_processes`: the kept rows per process differ, and a mean of per-process
    means would weigh them unequally). Validation reports image->text retrieval of the
    student's images against the teacher's captions (``i2t_r@k``), and its chance rate.

    Args:
        teacher: run folder of a trained model with a text tower.
        pairs: ``"positive"`` (rows labelled 1, true: the caption describes the image) or ``"all"``.
        cache: keep the teacher's caption embeddings per dataset row.
    """

    def __init__(self, teacher: str = "", pairs: str = "positive", cache: bool = True):
        super().__init__(teacher, cache)
        if pairs not in PAIRS:
            raise ValueError(f"crossmodal_distill: pairs must be one of {PAIRS}, got {pairs!r}")
        self.pairs = pairs
        self.teacher_heads: AlignmentHeads | None = None

    def setup(self, model: nn.Module) -> None:
        if model.vision is None or model.text is None:
            raise ValueError("crossmodal_distill trains the image tower and feeds the paired captions to the "
                             "teacher, so the batches need both: use a fusion reading text and image "
                             f"(model.fusion.name=concat), not one reading only {model.modalities}")
        self.teacher, self.teacher_heads = load_aligned(self.teacher_path, require_heads=False)
        if self.teacher.text is None:
            raise ValueError(f"teacher {self.teacher_path!r} has no text tower to distil from")
        check_same_inputs(model, self.teacher, self.teacher_path)
        width = self.teacher_heads.text.out_features if self.teacher_heads is not None else self.teacher.text.dim
        self.extras["projection"] = nn.Linear(model.vision.dim, width)
        for part in (model.text, model.fusion, model.head):  # only the image tower learns from this objective
            part.requires_grad_(False)

    def calibrate(self, accelerator, model, loader, model_dir) -> None:
        return None  # no decision thresholds: the metrics are retrieval recalls

    def metric_names(self, model: nn.Module) -> set[str]:
        return {f"i2t_r@{k}" for k in (1, 5, 10)} | {"cosine", "chance_r@1", "n"}

    def compute_targets(self, batch: dict[str, Any]) -> Tensor:
        pooled = self.teacher.text(batch["input_ids"], batch["attention_mask"]).pooled
        return F.normalize(self.teacher_heads.text(pooled) if self.teacher_heads is not None else pooled, dim=-1)

    def student_embedding(self, out: dict[str, Any]) -> Tensor:
        return F.normalize(self.extras["projection"](out["image"].pooled), dim=-1)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        keep = pair_mask(batch, self.pairs)
        target = self.teacher_outputs(batch)
        student = self.student_embedding(out)[keep]
        # feature_kd's MSE, as a mean over the kept rows of every process rather than of each process's own (their
        # counts differ): a process holds its rows' sum, and DDP's average of the gradients is the one-process one.
        per_row = (student.float() - target[keep].detach().float()).pow(2).mean(-1)  # (n_r,)
        loss = mean_over_processes(per_row.sum(), len(per_row))
        return {"loss": loss, "pairs": keep.sum().float(), "outputs": out}

    @torch.no_grad()
    def evaluate(self, accelerator, model: nn.Module, loader, **options: Any) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        parts: dict[str, list[Tensor]] = {"image": [], "text": [], "caption": [], "keep": []}
        for batch in loader:
            values = (self.student_embedding(model(batch)), self.compute_targets(batch),
                      caption_ids(batch["input_ids"], batch["attention_mask"]), pair_mask(batch, self.pairs))
            for key, value in zip(parts, accelerator.gather_for_metrics(values)):
                parts[key].append(value.cpu())
        model.train(was_training)
        emb = {k: torch.cat(v) for k, v in parts.items()}
        keep = emb.pop("keep")
        emb = {k: v[keep] for k, v in emb.items()}
        i2t = recall_at_k(emb["image"], emb["text"], emb["caption"], emb["caption"])
        cosine = (emb["image"] * emb["text"]).sum(-1).mean().item()
        chance = (emb["caption"][:, None] == emb["caption"][None, :]).float().mean().item()
        return {"overall": {**{f"i2t_r@{k}": v for k, v in i2t.items()}, "cosine": cosine, "chance_r@1": chance,
                            "n": float(len(keep.nonzero()))}}
