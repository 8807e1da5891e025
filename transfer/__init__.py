"""Transfer: multilingual distillation, contrastive image-text alignment, zero-shot cross-modal transfer, and
cross-modal / cross-architecture distillation (tasks and losses). One method per module; importing the package
registers its tasks. Reuse of a trained run (``train.init_from``), LP-FT and layer-wise LR decay are training
infrastructure and live in the engine (``engine/init_from.py``, ``engine/finetune.py``)."""

from . import contrastive, distill, losses, multilingual, zero_shot  # noqa: F401  (registers tasks)
from .multilingual import MultilingualDistillTask, translation_retrieval

__all__ = ["MultilingualDistillTask", "translation_retrieval"]
