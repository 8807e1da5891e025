"""Distillation losses (logits, features, attention maps) and the ``distill`` task end to end on a tiny run."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_overrides
from torch import nn

from crossfuse.commands import train
from models import MultimodalModel
from transfer.distill import DistillTask, check_same_inputs, labelled_rows
from transfer.losses import attention_kd, feature_kd, logit_kd


def test_logit_kd_matches_hinton_formula_and_scales_by_t_squared():
    torch.manual_seed(0)
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    for temp in (1.0, 4.0):
        p = torch.softmax(t / temp, -1)
        manual = (p * (p.log() - torch.log_softmax(s / temp, -1))).sum(-1).mean() * temp**2
        assert logit_kd(s, t, temp).item() == pytest.approx(manual.item(), rel=1e-5)
    assert logit_kd(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_logit_kd_multi_label_is_minimised_at_the_teacher():
    t = torch.randn(4, 3)
    s = t.clone().requires_grad_(True)
    logit_kd(s, t, 2.0, multi_label=True).backward()
    assert s.grad.abs().max().item() < 1e-6  # BCE against soft targets: zero gradient at the teacher's logits
    assert logit_kd(t + 1.0, t, multi_label=True) > logit_kd(t, t, multi_label=True)


def test_losses_never_send_gradients_to_the_teacher():
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 6, requires_grad=True)
    (logit_kd(s, t) + feature_kd(s, t)).backward()
    assert t.grad is None and s.grad is not None


def test_feature_kd_needs_a_projection_when_widths_differ():
    s, t = torch.randn(4, 8), torch.randn(4, 16)
    with pytest.raises(ValueError, match="projection=nn.Linear"):
        feature_kd(s, t)
    proj = nn.Linear(8, 16)
    loss = feature_kd(s, t, proj)
    loss.backward()
    assert proj.weight.grad is not None
    assert loss.item() == pytest.approx(F.mse_loss(proj(s), t).item())


def test_attention_kd_zero_for_equal_maps_and_ignores_padded_queries():
    a = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    assert attention_kd(a, a).item() == pytest.approx(0.0, abs=1e-6)
    b = a.clone()
    b[:, :, -1] = torch.softmax(torch.randn(2, 4, 5), -1)  # only the last (padded) query row differs
    mask = torch.tensor([[1, 1, 1, 1, 0]] * 2)
    assert attention_kd(b, a, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_kd(b, a).item() > 0
    # different head counts: compared after averaging heads
    assert attention_kd(a[:, :2], a).item() >= 0
    with pytest.raises(ValueError, match="sequence lengths differ"):
        attention_kd(a, a[:, :, :4, :4])


def test_logit_kd_rejects_bad_inputs():
    with pytest.raises(ValueError, match="temperature"):
        logit_kd(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="same outputs"):
        logit_kd(torch.zeros(2, 3), torch.zeros(2, 4))


def test_distill_task_trains_a_different_student_against_a_frozen_teacher(tiny_run, tmp_path, monkeypatch):
    """Student: other ViT width and fusion; logits + features (projected, widths differ) + cache."""
    seen = {}
    original = DistillTask.__call__

    def spy(self, model, batch):
        seen["teacher_training"] = self.teacher.training
        seen["teacher_grad"] = any(p.requires_grad for p in self.teacher.parameters())
        seen["cached"] = len(self._cache)
        return original(self, model, batch)

    monkeypatch.setattr(DistillTask, "__call__", spy)
    before = {k: v.clone() for k, v in MultimodalModel.from_pretrained(tiny_run).state_dict().items()}
    params = f"{{teacher: {tiny_run}, alpha: 0.7, temperature: 3.0, feature_weight: 1.0, cache: true}}"
    out = tmp_path / "runs"
    train.main(tiny_overrides(out, "student", **{
        "train.task": "distill", "train.task_params": params, "train.max_steps": 4, "model.fusion.dim": 48,
        "model.fusion.name": "concat",
        "model.vision.kwargs": "{img_size: 32, patch_size: 8, embed_dim: 48, depth: 1, num_heads: 2}"}))
    assert seen == {"teacher_training": False, "teacher_grad": False, "cached": 3 * 16}  # 3 batches seen
    logged = [json.loads(line) for line in (out / "student" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "train/kd" in r]
    assert len(steps) == 4 and all(math.isfinite(r["train/feature_kd"]) for r in steps)
    assert (out / "student" / "model" / "task_state.safetensors").is_file()  # the feature projection
    after = MultimodalModel.from_pretrained(tiny_run).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_teacher_with_other_preprocessing_is_a_clear_error(tiny_run):
    teacher = MultimodalModel.from_pretrained(tiny_run)
    student = MultimodalModel(teacher.model_cfg, teacher.num_outputs, vocab_size=teacher.text.hf_config.vocab_size,
                              image_overrides={**teacher.image_overrides, "mean": (0.1, 0.2, 0.3)})
    with pytest.raises(ValueError, match="data.mean"):
        check_same_inputs(student, teacher, str(tiny_run))


def test_distill_task_needs_a_teacher():
    with pytest.raises(ValueError, match="train.task_params.teacher"):
        DistillTask()


class _Fixed(nn.Module):
    """A stand-in model whose outputs are fixed logits (teacher or student)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, batch):
        return {"logits": self.logits, "features": self.logits}


def test_labelled_fraction_uses_only_the_labelled_rows_labels():
    """Below 1, cross-entropy averages over a fixed subset of rows; the other rows' labels change nothing, while
    distillation still covers every row."""
    torch.manual_seed(0)
    index, labels = torch.arange(100, 140), torch.randint(0, 3, (40,))
    keep = labelled_rows(index, 0.3)
    assert 0.15 < keep.float().mean() < 0.45 and torch.equal(keep, labelled_rows(index, 0.3))  # fixed subset
    task = DistillTask(teacher="unused", alpha=0.5, temperature=2.0, labelled_fraction=0.3)
    task.teacher = _Fixed(torch.randn(40, 3))
    student = _Fixed(torch.randn(40, 3))
    out = task(student, {"index": index, "labels": labels})
    torch.testing.assert_close(out["ce"], F.cross_entropy(student.logits[keep], labels[keep]).detach())
    torch.testing.assert_close(out["kd"], logit_kd(student.logits, task.teacher.logits, 2.0).detach())
    relabelled = labels.clone()
    relabelled[~keep] = (relabelled[~keep] + 1) % 3
    torch.testing.assert_close(task(student, {"index": index, "labels": relabelled})["loss"], out["loss"])
    relabelled[keep] = (relabelled[keep] + 1) % 3
    assert not torch.allclose(task(student, {"index": index, "labels": relabelled})["loss"], out["loss"])
    with pytest.raises(ValueError, match="labelled_fraction"):
        DistillTask(teacher="unused", labelled_fraction=0.0)
