"""Encoders (transformers, timm), heads and the multimodal model.

The errors and :mod:`models.folder` (the files of a saved model) are imported at once; the model classes, which
import transformers and the fusion methods, only when first used (``from models import MultimodalModel``), so a
tool that only reads saved weights (``merge.py``) starts without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import CheckpointMismatchError, ModelNotAvailableError
from .folder import resolve_model_dir

if TYPE_CHECKING:
    from .heads import ClassificationHead
    from .hub import push_to_hub, resolve_pretrained
    from .multimodal import MultimodalModel, load_state
    from .text_encoder import TextEncoder
    from .vision_encoder import VisionEncoder, load_weights_file

_LAZY = {"ClassificationHead": "heads", "MultimodalModel": "multimodal", "load_state": "multimodal",
         "TextEncoder": "text_encoder", "VisionEncoder": "vision_encoder", "load_weights_file": "vision_encoder",
         "push_to_hub": "hub", "resolve_pretrained": "hub"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CheckpointMismatchError", "ClassificationHead", "ModelNotAvailableError", "MultimodalModel", "TextEncoder",
    "VisionEncoder", "load_state", "load_weights_file", "push_to_hub", "resolve_model_dir", "resolve_pretrained",
]
