"""ONNX export of the whole model (text + image in, logits out) and its ONNX Runtime counterpart.

The graph takes ``input_ids`` / ``attention_mask`` ``(batch, sequence)`` int64, ``pixel_values``
``(batch, 3, H, W)`` float32 and ``text_present`` / ``image_present`` ``(batch,)`` bool, and returns ``logits``
``(batch, num_outputs)``; batch and sequence are dynamic axes. Inputs of a modality the fusion method does not read
are left out of the graph. Exported with the TorchScript exporter (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which crossfuse does not depend on.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fusion.base import ModalityFeatures
from models import MultimodalModel

from .folder import model_info
from .registry import register_export

ONNX_NAME = "model.onnx"
INPUTS = ("input_ids", "attention_mask", "pixel_values", "text_present", "image_present")
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 7, 20  # what the TorchScript exporter writes; attention itself needs 14 or more
ATOL = 1e-4  # max |logit difference| between ONNX Runtime and PyTorch eager on real batches, float32


class UnsupportedExportError(ValueError):
    """The model cannot be exported to ONNX as asked (fusion method, opset)."""


def _fill_missing(feats: ModalityFeatures, missing: Tensor) -> ModalityFeatures:
    """:func:`fusion.base.fill_missing` without its all-present shortcut, whose Python branch a trace would freeze."""
    keep = feats.present.bool()[:, None]
    pooled = torch.where(keep, feats.pooled, missing.to(feats.pooled.dtype).expand_as(feats.pooled))
    tokens = torch.where(keep[:, :, None], feats.tokens, missing.to(feats.tokens.dtype).expand_as(feats.tokens))
    first = torch.zeros_like(feats.mask, dtype=torch.bool)
    first[:, 0] = True
    # Boolean logic rather than where(): ONNX Runtime has no Where kernel for bool tensors.
    mask = (feats.mask.bool() & keep) | (first & ~keep)
    return feats._replace(tokens=tokens, mask=mask, pooled=pooled)


class _Graph(nn.Module):
    """The traced function: the same computation as ``MultimodalModel.forward`` in eval mode, on plain tensors."""

    def __init__(self, model: MultimodalModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, text_present: Tensor,
                image_present: Tensor) -> Tensor:
        m = self.model
        text = image = None
        if m.text is not None:
            text = _fill_missing(m.text(input_ids, attention_mask, text_present), m.fusion.missing_text)
        if m.vision is not None:
            image = _fill_missing(m.vision(pixel_values, image_present), m.fusion.missing_image)
        return m.head(m.fusion.fuse(text, image))


def example_inputs(model: MultimodalModel, batch: int = 2, length: int = 8) -> tuple[Tensor, ...]:
    """Dummy inputs of the right dtypes and shapes for tracing."""
    size = model.image_data_config["input_size"] if model.vision is not None else (3, 8, 8)
    return (torch.ones(batch, length, dtype=torch.long), torch.ones(batch, length, dtype=torch.long),
            torch.zeros(batch, *size), torch.ones(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool))


def export_onnx(model: MultimodalModel, path: str | Path, opset: int = DEFAULT_OPSET) -> list[str]:
    """Write ``model`` as an ONNX graph; returns the names of the graph's inputs."""
    name = model.model_cfg["fusion"]["name"]
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedExportError(
            f"ONNX opset {opset} is outside what the exporter writes ({MIN_OPSET}-{MAX_OPSET}); use --opset "
            f"{DEFAULT_OPSET} (attention layers need 14 or more)")
    graph = _Graph(model.eval()).eval()
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "pixel_values": {0: "batch"}, "text_present": {0: "batch"}, "image_present": {0: "batch"},
            "logits": {0: "batch"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
            torch.onnx.export(graph, example_inputs(model), str(path), dynamo=False, input_names=list(INPUTS),
                              output_names=["logits"], dynamic_axes=axes, opset_version=opset)
    except (torch.onnx.errors.OnnxExporterError, torch.onnx.errors.UnsupportedOperatorError, ValueError) as err:
        raise UnsupportedExportError(
            f"fusion method {name!r} cannot be exported at ONNX opset {opset}: {str(err).splitlines()[0]} "
            f"(opsets {MIN_OPSET}-{MAX_OPSET} are possible; the default is {DEFAULT_OPSET}; a model that does not "
            "export at any opset can still be deployed as int8 or pruned PyTorch: export.py --kind int8)") from err
    finally:
        model.eval()  # the exporter restores the wrapper's train flag, which would put the model in train mode
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the :class:`MultimodalModel` interface (``forward(batch, drop)``)."""

    def __init__(self, path: str | Path, info: dict[str, Any], threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        # As many threads as torch uses (OMP_NUM_THREADS / torch.set_num_threads), so comparisons are like for like.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.label_names, self.multi_label = info["label_names"], info["multi_label"]
        self.num_outputs = info["num_outputs"]
        self.image_data_config = info.get("image_data_config")
        from fusion.registry import get_fusion_class

        self.modalities = get_fusion_class(info["model"]["fusion"]["name"]).modalities

    def forward(self, batch: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Tensor]:
        feeds = {}
        for name in self.input_names:
            value = batch[name]
            if name == "text_present" and "text" in drop or name == "image_present" and "image" in drop:
                value = torch.zeros_like(value)
            value = value.cpu()
            feeds[name] = value.numpy().astype(np.float32) if name == "pixel_values" else value.numpy()
        (logits,) = self.session.run(["logits"], feeds)
        return {"logits": torch.from_numpy(logits)}


@register_export("onnx")
class OnnxExport:
    """One ONNX graph for the whole model, run with ONNX Runtime on CPU."""

    @staticmethod
    def export(model: MultimodalModel, out_dir: Path, opset: int = DEFAULT_OPSET, **_: Any) -> dict[str, Any]:
        inputs = export_onnx(model, out_dir / ONNX_NAME, opset)
        return {"opset": opset, "inputs": inputs, "outputs": ["logits"], "dynamic_axes": ["batch", "sequence"],
                "parity_atol": ATOL, "exporter": "torch.onnx.export(dynamo=False)"}

    @staticmethod
    def load(directory: Path, manifest: dict[str, Any]) -> OnnxModel:
        return OnnxModel(directory / ONNX_NAME, model_info(directory))
