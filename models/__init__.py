"""Encoders (transformers, timm), heads and the multimodal model."""

from .errors import CheckpointMismatchError, ModelNotAvailableError
from .folder import resolve_model_dir
from .heads import ClassificationHead
from .hub import push_to_hub, resolve_pretrained
from .multimodal import MultimodalModel, load_state
from .text_encoder import TextEncoder
from .vision_encoder import VisionEncoder, load_weights_file

__all__ = [
    "CheckpointMismatchError", "ClassificationHead", "ModelNotAvailableError", "MultimodalModel", "TextEncoder",
    "VisionEncoder", "load_state", "load_weights_file", "push_to_hub", "resolve_model_dir", "resolve_pretrained",
]
