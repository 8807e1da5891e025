"""Merging by distillation: several trained teachers distilled into one student (``multi_teacher_distill``).

Teachers may differ in fusion method, encoders or training language; the student learns from the weighted average
of their tempered logits (and optionally their fused features), plus the hard labels. Start the student from a
weight-space merge (``train.init_from`` or loading merged weights) to distil only the remaining gap.

Limitation: every teacher receives the student's batch, so all must read the same tokenizer and image size (true
for models trained on the embedded benchmark with the tiny text encoder); the task checks this when it loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.tasks import Task, classification_loss, register_task
from models import MultimodalModel
from transfer.losses import feature_kd, logit_kd


def teacher_target(logits: list[Tensor], weights: list[float], temperatures: list[float], temperature: float
                   ) -> Tensor:
    """Weighted average of the teachers' logits, each first rescaled from its own temperature to ``temperature``.

    ``z = sum_i w_i * z_i * T / T_i``, so ``softmax(z / T) = softmax(sum_i w_i z_i / T_i)``: a teacher with a
    higher ``T_i`` contributes a softer opinion. ``(B, C)`` in, ``(B, C)`` out.
    """
    return sum(w * z.float() * (temperature / t) for w, z, t in zip(weights, logits, temperatures))


@register_task("multi_teacher_distill")
class MultiTeacherDistillTask(Task):
    """``(1 - alpha) * CE(student, labels) + alpha * KD(student, teachers) + feature_weight * feature MSE``.

    KD is Hinton et al. 2015 soft-target distillation against :func:`teacher_target` (``T**2``-scaled KL); the
    feature term (FitNets, Romero et al. 2015) matches the student's fused features ``(B, D_s)``, through one
    learned linear projection per teacher, to each teacher's ``(B, D_i)``, weighted like the logits.

    Args:
        teachers: run or model folders of trained models with the student's label set.
        weights: one weight per teacher (default uniform; normalised to sum to 1).
        temperature: the distillation temperature ``T`` of the student.
        temperatures: one ``T_i`` per teacher (default ``T`` for all).
        alpha: weight of the distillation term (as in ``distill``); ``0`` trains on the labels alone.
        feature_weight: weight of the feature term (0 = off).
    """

    def __init__(self, teachers: list[str], weights: list[float] | None = None, temperature: float = 2.0,
                 temperatures: list[float] | None = None, alpha: float = 0.5, feature_weight: float = 0.0):
        if not teachers:
            raise ValueError("multi_teacher_distill: train.task_params.teachers is empty; list teacher run folders")
        n = len(teachers)
        weights = [1.0] * n if weights is None else list(weights)
        temperatures = [temperature] * n if temperatures is None else list(temperatures)
        if len(weights) != n or len(temperatures) != n:
            raise ValueError(f"multi_teacher_distill: {n} teachers but {len(weights)} weights and "
                             f"{len(temperatures)} temperatures; give one of each per teacher")
        if min(temperatures + [temperature]) <= 0:
            raise ValueError("multi_teacher_distill: temperatures must be > 0")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"multi_teacher_distill: alpha must be in [0, 1], got {alpha}")
        super().__init__()
        total = float(sum(weights))
        self.weights = [w / total for w in weights]
        self.temperature, self.temperatures = temperature, temperatures
        self.alpha, self.feature_weight = alpha, feature_weight
        self.teacher_paths = [str(t) for t in teachers]
        self.teachers = nn.ModuleList()  # frozen, moved to the device with the task, never trained or saved

    def setup(self, model: nn.Module) -> None:
        """Load the teachers (frozen, eval mode) and, with ``feature_weight``, the feature projections to train."""
        for path in self.teacher_paths:
            if not Path(path).exists():
                raise FileNotFoundError(f"multi_teacher_distill: teacher {path!r} does not exist (give trained run "
                                        "folders or saved model folders)")
            teacher = MultimodalModel.from_pretrained(path).eval().requires_grad_(False)
            if teacher.label_names != model.label_names or teacher.multi_label != model.multi_label:
                raise ValueError(f"teacher {path} predicts {teacher.label_names}, the student {model.label_names}; "
                                 "distil only between models with the same label set")
            if model.image_data_config and teacher.image_data_config and \
                    list(teacher.image_data_config["input_size"]) != list(model.image_data_config["input_size"]):
                raise ValueError(f"teacher {path} reads images of size {teacher.image_data_config['input_size']}, "
                                 f"the student {model.image_data_config['input_size']}: teachers see the student's "
                                 "batch, so they must share its image size and tokenizer")
            self.teachers.append(teacher)
        if self.feature_weight > 0:
            dim = model.fusion.out_dim
            self.extras["projections"] = nn.ModuleList(nn.Linear(dim, t.fusion.out_dim) for t in self.teachers)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        logits = out["logits"]
        with torch.no_grad():
            teacher_outs = [teacher.eval()(batch) for teacher in self.teachers]
        target = teacher_target([t["logits"] for t in teacher_outs], self.weights, self.temperatures,
                                self.temperature)
        multi = batch["labels"].ndim == 2
        kd = logit_kd(logits, target, self.temperature, multi_label=multi)
        hard = classification_loss(logits, batch["labels"])
        loss = (1.0 - self.alpha) * hard + self.alpha * kd
        result = {"loss": loss, "hard_loss": hard.detach(), "kd_loss": kd.detach(), "outputs": out}
        if self.feature_weight > 0:
            pairs = zip(self.weights, self.extras["projections"], teacher_outs)
            feat = sum(w * feature_kd(out["features"], t["features"], proj) for w, proj, t in pairs)
            result["loss"] = loss + self.feature_weight * feat
            result["feature_loss"] = feat.detach()
        return result
