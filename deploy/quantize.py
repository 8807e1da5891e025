"""int8 linear layers on torchao's quantization API (``torchao.quantization.quantize_``).

Every ``nn.Linear`` of the chosen parts (text tower, fusion, head by default) gets int8 weights with one symmetric
scale per output row. Two schemes (``--scheme``), both torchao configs:

* ``weight-only`` (default, ``Int8WeightOnlyConfig``): activations stay float; the int8 weight is converted to float
  inside each call and multiplied with the float GEMM. 4x smaller linear weights, accuracy of the float model,
  speed about that of the float model (it cannot be faster: the arithmetic is float).
* ``dynamic`` (``Int8DynamicActivationInt8WeightConfig``): activations are quantized to int8 per token at run time
  and multiplied by ``torch._int_mm`` (called by torchao, not by crossfuse). Fast only where PyTorch's CPU int8
  GEMM is (oneDNN on CPUs with VNNI/AMX); on an AVX2-only CPU it is ~25x slower than float — see
  ``docs/deployment.md`` for the profile. For int8 speed on such CPUs use ``--kind onnx-int8 --reduce-range``.

Stored as safetensors in ``model.int8.safetensors``: ``<layer>.weight_int8`` (out, in) int8 and
``<layer>.weight_scale`` (out,) float32 per quantized layer, every other tensor of the model in float. Folders
written by crossfuse before torchao (``torch.ao`` dynamic quantization, which also stored per-row zero points) still
load: their int8 weights are the same symmetric per-row format, run with the ``dynamic`` scheme, with a warning
saying how to re-export.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig

from models import MultimodalModel
from models.errors import CheckpointMismatchError, ModelNotAvailableError
from models.folder import read_info, read_tensors

from .registry import register_export

WEIGHTS_NAME = "model.int8.safetensors"
PARTS = ("text", "vision", "fusion", "head")
DEFAULT_PARTS = ("text", "fusion", "head")
SCHEMES = ("weight-only", "dynamic")
DEFAULT_SCHEME = "weight-only"
BACKEND = "torchao"


def _torchao():
    # Importing torchao makes torch log a deprecation notice about torchao's own enums, which a user cannot act on.
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        import torchao.quantization as tq
    except ImportError:
        raise ModuleNotFoundError("export kind 'int8' needs torchao: pip install 'crossfuse[deploy]' (or "
                                  "pip install torchao), or export with --kind onnx-int8") from None
    finally:
        pytree_log.setLevel(level)
    return tq


def _config(scheme: str):
    tq = _torchao()
    if scheme == "weight-only":
        return tq.Int8WeightOnlyConfig(granularity=tq.PerRow(), set_inductor_config=False)
    if scheme == "dynamic":
        return tq.Int8DynamicActivationInt8WeightConfig(granularity=tq.PerRow(), set_inductor_config=False)
    raise ValueError(f"unknown int8 scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")


def linear_names(model: nn.Module, parts: tuple[str, ...] = DEFAULT_PARTS) -> list[str]:
    """Names of the float ``nn.Linear`` layers of ``parts``."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"cannot quantize {unknown}: the parts of a model are {', '.join(PARTS)}")
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.split(".")[0] in parts]


def quantize_linears(model: MultimodalModel, parts: tuple[str, ...] = DEFAULT_PARTS,
                     scheme: str = DEFAULT_SCHEME, names: list[str] | None = None) -> list[str]:
    """Quantize the ``nn.Linear`` layers of ``parts`` (or exactly ``names``) in place with torchao's ``quantize_``;
    returns their names."""
    config = _config(scheme)
    names = linear_names(model, parts) if names is None else names
    chosen = set(names)
    _torchao().quantize_(model, config, filter_fn=lambda module, fqn: fqn in chosen and isinstance(module, nn.Linear))
    missed = sorted(chosen - set(quantized_layers(model)))
    if missed:
        raise CheckpointMismatchError(f"layers {missed[:5]} are not linear layers of this model: the export was "
                                      "written for another architecture")
    return names


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> linear layer whose weight is a torchao int8 tensor."""
    int8 = _torchao().Int8Tensor
    return {name: m for name, m in model.named_modules() if isinstance(getattr(m, "weight", None), int8)}


@register_export("int8")
class Int8Export:
    """int8 linear weights (torchao); activations float (``weight-only``) or int8 per token (``dynamic``)."""

    @staticmethod
    def export(model: MultimodalModel, out_dir: Path, parts: tuple[str, ...] = DEFAULT_PARTS,
               scheme: str = DEFAULT_SCHEME, **_: Any) -> dict[str, Any]:
        from importlib.metadata import version

        model = model.eval()
        float_state = dict(model.state_dict())
        names = quantize_linears(model, tuple(parts), scheme)
        tensors = {k: v.detach().contiguous() for k, v in float_state.items()
                   if k not in {f"{n}.weight" for n in names}}
        for name, layer in quantized_layers(model).items():
            tensors[f"{name}.weight_int8"] = layer.weight.qdata.contiguous()
            tensors[f"{name}.weight_scale"] = layer.weight.scale.reshape(-1).float().contiguous()
        save_file(tensors, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
        activations = "float" if scheme == "weight-only" else "int8, symmetric, one scale per token, at run time"
        return {"backend": BACKEND, "torchao_version": version("torchao"), "scheme": scheme,
                "config": type(_config(scheme)).__name__, "weights": "int8, symmetric, one scale per output row",
                "activations": activations, "parts": list(parts), "quantized_layers": names}

    @staticmethod
    def load(directory: Path, manifest: dict[str, Any]) -> MultimodalModel:
        details = manifest["details"]
        path = directory / WEIGHTS_NAME
        state = read_tensors(path)
        names = details["quantized_layers"]
        if details.get("backend") == BACKEND:
            scheme = details["scheme"]
        else:  # written with torch.ao.quantization.quantize_dynamic (crossfuse before torchao)
            scheme = "dynamic"
            _check_old_zero_points(path, state, names)
            warnings.warn(f"{directory} is an int8 export of the old format (torch.ao dynamic quantization, "
                          "removed from crossfuse): its int8 weights load and run with torchao's 'dynamic' scheme, "
                          "whose logits differ slightly from the old ones. Re-export it with this version: "
                          "python export.py RUN_DIR --kind int8 [--scheme dynamic]", stacklevel=2)
        info = read_info(directory)
        text_dir = directory / "text_config"
        model = MultimodalModel(
            info["model"], info["num_outputs"], info["label_names"], info["multi_label"],
            image_overrides=info.get("image_overrides"),
            text_hf_config=AutoConfig.from_pretrained(text_dir) if text_dir.is_dir() else None, pretrained=False,
        ).eval()
        expected = model.state_dict()
        skip = {f"{n}.weight" for n in names}
        missing = sorted(k for k in expected if k not in skip and k not in state)
        missing += sorted(f"{n}.{p}" for n in names for p in ("weight_int8", "weight_scale") if f"{n}.{p}" not in state)
        if missing:
            raise CheckpointMismatchError(f"{path} lacks tensors of the model: {missing[:10]}; re-export the run "
                                          "with export.py --kind int8")
        model.load_state_dict({k: v for k, v in state.items() if k in expected and k not in skip}, strict=False)
        quantize_linears(model, scheme=scheme, names=names)
        with torch.no_grad():
            for name, layer in quantized_layers(model).items():
                qdata, scale = state[f"{name}.weight_int8"], state[f"{name}.weight_scale"]
                if qdata.shape != layer.weight.qdata.shape or scale.numel() != layer.weight.scale.numel():
                    raise CheckpointMismatchError(
                        f"{path}: {name} has int8 weights {tuple(qdata.shape)} and {scale.numel()} scales, the model "
                        f"{tuple(layer.weight.qdata.shape)}: the export was written for another architecture")
                layer.weight.qdata.copy_(qdata)
                layer.weight.scale.copy_(scale.reshape(layer.weight.scale.shape).to(layer.weight.scale.dtype))
        return model


def _check_old_zero_points(path: Path, state: dict[str, torch.Tensor], names: list[str]) -> None:
    """Old exports stored per-row zero points; crossfuse always wrote symmetric (zero) ones, the only kind torchao's
    symmetric int8 tensors can hold."""
    for name in names:
        zero = state.get(f"{name}.weight_zero_point")
        if zero is not None and bool((zero != 0).any()):
            raise ModelNotAvailableError(
                f"{path}: {name} has non-zero weight zero points, which this version cannot load; re-export the "
                "run with this version: python export.py RUN_DIR --kind int8")
