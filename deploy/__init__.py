"""Deployment: int8 quantization, pruning and ONNX export (float and int8) of trained models, and one loader for
all of them.

``import deploy`` registers every export kind; :func:`export_run` writes an export folder, :func:`load_for_inference`
opens any model folder (run, ``save_pretrained`` or export) for evaluation and prediction.
"""

from . import onnx_export, onnx_int8, prune, quantize  # noqa: F401  (imported for their @register_export side effect)
from .folder import MANIFEST_NAME, load_for_inference, read_manifest, resolve_folder, write_export_folder
from .registry import get_export, list_exports, register_export

__all__ = ["MANIFEST_NAME", "get_export", "list_exports", "load_for_inference", "read_manifest", "register_export",
           "resolve_folder", "write_export_folder"]
