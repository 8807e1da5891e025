"""ONNX Runtime int8: the graph of :mod:`deploy.onnx_export` with its weight matrices quantized to int8.

``onnxruntime.quantization.quantize_dynamic`` rewrites every ``MatMul`` / ``Gemm`` whose second input is a constant
weight (linear layers of the text tower, vision tower, fusion and head) into integer kernels: weights int8 with one
scale per output channel, stored in the graph; activations quantized to uint8 per batch at run time, so no
calibration data is needed. Attention's activation-by-activation products, softmax, layer norms and embeddings stay
float. Same scheme as the ``int8`` kind (Jacob et al., 2018), run by ONNX Runtime's int8 kernels instead of
PyTorch's, with one graph for the whole model instead of per-layer calls from Python.

``reduce_range`` quantizes weights to 7 bits: ONNX Runtime's documentation recommends it on x86 CPUs without VNNI
instructions (AVX2 only), where uint8 x int8 products are accumulated in 16 bits and 8-bit weights can saturate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .folder import model_info
from .onnx_export import DEFAULT_OPSET, ONNX_NAME, OnnxModel, export_onnx
from .registry import register_export


@register_export("onnx-int8")
class OnnxInt8Export:
    """One ONNX graph with int8 weight matrices, run with ONNX Runtime on CPU."""

    @staticmethod
    def export(model: Any, out_dir: Path, opset: int = DEFAULT_OPSET, reduce_range: bool = False,
               **_: Any) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        float_path = out_dir / "model.float.onnx"
        try:
            inputs = export_onnx(model, float_path, opset)
            quantize_dynamic(float_path, out_dir / ONNX_NAME, op_types_to_quantize=["MatMul", "Gemm"],
                             per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8)
        finally:
            float_path.unlink(missing_ok=True)  # only the quantized graph is part of the export
        nodes = onnx.load(str(out_dir / ONNX_NAME), load_external_data=False).graph.node
        integer = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger") for n in nodes)
        float_matmuls = sum(n.op_type in ("MatMul", "Gemm") for n in nodes)
        return {"opset": opset, "inputs": inputs, "outputs": ["logits"], "dynamic_axes": ["batch", "sequence"],
                "scheme": "onnxruntime quantize_dynamic: per-channel int8 weights "
                          f"({'7-bit, reduce_range' if reduce_range else '8-bit'}), uint8 activations per batch",
                "integer_matmul_nodes": integer, "float_matmul_nodes": float_matmuls,
                "exporter": "torch.onnx.export(dynamo=False) + onnxruntime.quantization.quantize_dynamic"}

    @staticmethod
    def load(directory: Path, manifest: dict[str, Any]) -> OnnxModel:
        return OnnxModel(directory / ONNX_NAME, model_info(directory))
