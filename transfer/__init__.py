"""Transfer: reuse of trained models, fine-tuning schedules, multilingual distillation (part A) and cross-modal /
cross-architecture distillation losses (part B). One method per module."""

from . import contrastive, distill, losses, multilingual, reuse, schedules, zero_shot  # noqa: F401  (registers tasks)
from .multilingual import ParallelPair, distill_multilingual, read_parallel, translation_retrieval
from .reuse import InitReport, init_from_run, load_matching
from .schedules import drop_encoder_grads, layer_lr_scale

__all__ = [
    "InitReport",
    "ParallelPair",
    "distill_multilingual",
    "drop_encoder_grads",
    "init_from_run",
    "layer_lr_scale",
    "load_matching",
    "read_parallel",
    "translation_retrieval",
]
