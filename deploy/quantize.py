"""Dynamic int8 quantization of the linear layers (Jacob et al., 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference"; PyTorch's dynamic scheme).

Weights of every ``nn.Linear`` in the chosen parts (text tower, fusion, head by default) become int8 with one scale
per output row; activations are quantized on the fly per batch, so no calibration data is needed. Stored as
safetensors: ``<layer>.weight_int8`` (int8), ``<layer>.weight_scale`` / ``<layer>.weight_zero_point`` (per row)
and ``<layer>.bias`` (float), plus every other tensor of the model in float, in ``model.int8.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
from transformers import AutoConfig

from models import MultimodalModel
from models.errors import CheckpointMismatchError
from models.multimodal import CONFIG_NAME

from .registry import register_export

WEIGHTS_NAME = "model.int8.safetensors"
PARTS = ("text", "vision", "fusion", "head")
DEFAULT_PARTS = ("text", "fusion", "head")


def quantize_linears(model: MultimodalModel, parts: tuple[str, ...] = DEFAULT_PARTS) -> list[str]:
    """Swap the ``nn.Linear`` layers of ``parts`` for dynamic int8 ones, in place; returns their names."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"cannot quantize {unknown}: the parts of a model are {', '.join(PARTS)}")
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.split(".")[0] in parts]
    if torch.backends.quantized.engine == "none":
        raise RuntimeError("this torch build has no quantized CPU engine (fbgemm/x86/qnnpack): int8 is unavailable")
    quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in names}, inplace=True)
    return names


def _quantized_layers(model: nn.Module) -> dict[str, DynamicLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicLinear)}


@register_export("int8")
class Int8Export:
    """Dynamic int8 linear layers; activations and every other layer stay float."""

    @staticmethod
    def export(model: MultimodalModel, out_dir: Path, parts: tuple[str, ...] = DEFAULT_PARTS,
               **_: Any) -> dict[str, Any]:
        model = model.eval()
        float_state = {k: v for k, v in model.state_dict().items()}
        names = quantize_linears(model, tuple(parts))
        skip = {f"{n}.{p}" for n in names for p in ("weight", "bias")}
        tensors = {k: v.detach().contiguous() for k, v in float_state.items() if k not in skip}
        for name, layer in _quantized_layers(model).items():
            qweight, bias = layer.weight(), layer.bias()
            tensors[f"{name}.weight_int8"] = qweight.int_repr().contiguous()
            tensors[f"{name}.weight_scale"] = qweight.q_per_channel_scales().float().contiguous()
            tensors[f"{name}.weight_zero_point"] = qweight.q_per_channel_zero_points().contiguous()
            if bias is not None:
                tensors[f"{name}.bias"] = bias.detach().contiguous()
        save_file(tensors, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
        return {"scheme": "dynamic int8, per-output-row symmetric weights, float activations quantized per batch",
                "parts": list(parts), "quantized_layers": names}

    @staticmethod
    def load(directory: Path, manifest: dict[str, Any]) -> MultimodalModel:
        info = json.loads((directory / CONFIG_NAME).read_text())
        text_dir = directory / "text_config"
        model = MultimodalModel(
            info["model"], info["num_outputs"], info["label_names"], info["multi_label"],
            image_overrides=info.get("image_overrides"),
            text_hf_config=AutoConfig.from_pretrained(text_dir) if text_dir.is_dir() else None, pretrained=False,
        ).eval()
        names = manifest["details"]["quantized_layers"]
        state = load_file(str(directory / WEIGHTS_NAME))
        skip = {f"{n}.{p}" for n in names for p in ("weight", "bias")}
        missing = sorted(k for k in model.state_dict() if k not in skip and k not in state)
        if missing:
            raise CheckpointMismatchError(f"{directory / WEIGHTS_NAME} lacks tensors of the model: {missing[:10]}")
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=False)
        quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in names}, inplace=True)
        for name, layer in _quantized_layers(model).items():
            qweight = torch._make_per_channel_quantized_tensor(
                state[f"{name}.weight_int8"], state[f"{name}.weight_scale"].double(),
                state[f"{name}.weight_zero_point"].long(), 0)
            layer.set_weight_bias(qweight, state.get(f"{name}.bias"))
        return model
