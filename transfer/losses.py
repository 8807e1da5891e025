"""Knowledge-distillation losses in one place: logits, features (hidden states) and attention maps.

Every function takes the student's tensor first and the teacher's second and treats the teacher as a constant
(its tensor is detached here, so a caller that forgot ``no_grad`` still cannot push gradients into it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def logit_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0,
             multi_label: bool = False) -> Tensor:
    """Soft-target distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    Single-label: ``KL(softmax(t / T) || softmax(s / T)) * T**2``, averaged over the batch ("batchmean"); the
    ``T**2`` keeps gradient magnitudes comparable across temperatures, so the KD weight need not be retuned when
    ``T`` changes. Multi-label outputs (independent sigmoids, ``multi_label=True``) use binary cross-entropy of
    ``sigmoid(s / T)`` against the soft targets ``sigmoid(t / T)``, averaged over labels and batch, also times
    ``T**2`` (its minimum is the soft targets' entropy, not 0); a softmax across labels would make them compete.

    Args:
        student_logits: ``(B, C)`` (or ``(..., C)``: leading dims are flattened into the batch).
        teacher_logits: same shape as ``student_logits``.
        temperature: ``T > 0``; larger values soften both distributions.
        multi_label: treat the ``C`` outputs as independent binary labels.

    Returns:
        Scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"logit_kd: temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit_kd: student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ; distil between heads with the same outputs")
    s = student_logits.float().flatten(0, -2) / temperature
    t = teacher_logits.detach().float().flatten(0, -2) / temperature
    if multi_label:
        return F.binary_cross_entropy_with_logits(s, torch.sigmoid(t)) * temperature**2
    return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True) \
        * temperature**2


def feature_kd(student: Tensor, teacher: Tensor, projection: nn.Module | None = None) -> Tensor:
    """Feature / hidden-state distillation (FitNets, Romero et al. 2015): MSE between the (projected) student
    features and the teacher's.

    Args:
        student: ``(..., D_s)`` student features (pooled ``(B, D_s)`` or tokens ``(B, L, D_s)``).
        teacher: ``(..., D_t)`` teacher features with the same leading dims.
        projection: learned map ``D_s -> D_t`` (e.g. ``nn.Linear``), required when the widths differ; it is
            trained with the student (return it from a task's ``setup``).

    Returns:
        Scalar mean squared error.
    """
    if projection is not None:
        student = projection(student)
    if student.shape != teacher.shape:
        raise ValueError(f"feature_kd: student features {tuple(student.shape)} and teacher features "
                         f"{tuple(teacher.shape)} differ; pass projection=nn.Linear(student_width, teacher_width) "
                         "when the widths differ")
    return F.mse_loss(student.float(), teacher.detach().float())


def attention_kd(student_attn: Tensor, teacher_attn: Tensor, mask: Tensor | None = None,
                 eps: float = 1e-8) -> Tensor:
    """Attention-map distillation: KL between teacher and student attention distributions per query
    (MiniLM, Wang et al. 2020; TinyBERT, Jiao et al. 2020 uses MSE on the same maps).

    Both maps are post-softmax probabilities over keys. When head counts differ, the heads are averaged first
    (the per-head maps of two architectures have no correspondence; their mean does).

    Args:
        student_attn: ``(B, H_s, L, L)`` student attention probabilities (rows sum to 1).
        teacher_attn: ``(B, H_t, L, L)`` teacher attention probabilities with the same ``L``.
        mask: optional ``(B, L)`` query mask (1 = real token); padded query rows are ignored.
        eps: floor inside the logarithms.

    Returns:
        Scalar: ``KL(teacher || student)`` summed over keys, averaged over heads and valid queries.
    """
    if student_attn.ndim != 4 or teacher_attn.ndim != 4:
        raise ValueError(f"attention_kd: expected (B, heads, L, L) maps, got {tuple(student_attn.shape)} and "
                         f"{tuple(teacher_attn.shape)}")
    if student_attn.shape[0] != teacher_attn.shape[0] or student_attn.shape[2:] != teacher_attn.shape[2:]:
        raise ValueError(f"attention_kd: batch or sequence lengths differ: student {tuple(student_attn.shape)}, "
                         f"teacher {tuple(teacher_attn.shape)}; feed both models the same tokens")
    s, t = student_attn.float(), teacher_attn.detach().float()
    if s.shape[1] != t.shape[1]:
        s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
    kl = (t * (torch.log(t + eps) - torch.log(s + eps))).sum(-1)  # (B, H, L)
    if mask is None:
        return kl.mean()
    weight = mask.to(kl.dtype)[:, None, :].expand_as(kl)
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)
