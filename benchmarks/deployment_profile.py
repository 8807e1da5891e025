"""Where the time of one batch of 32 goes, per deployment variant: torch.profiler for PyTorch models, ONNX Runtime's
own profiler for ONNX graphs, and throughput at 1 and 2 threads. Used by ``benchmarks/deployment.py``.

PyTorch ops are counted by self CPU time (an op's own time, not its children's), except torchao's activation
quantization (``torchao::choose_qparams_affine``, ``torchao::quantize_affine``), counted with its children, so one
row shows what quantizing activations at run time costs. ONNX Runtime nodes are counted by kernel time per op type.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import torch

QUANTIZE_OPS = ("torchao::choose_qparams_affine", "torchao::quantize_affine")
WHAT = {  # what each op is in these models, for the table
    "aten::addmm": "float GEMM (linear with bias)", "aten::mm": "float GEMM (linear)",
    "aten::_int_mm": "int8 GEMM (torch._int_mm)", "aten::bmm": "attention, float", "aten::baddbmm": "attention, float",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention (SDPA), float",
    "aten::native_layer_norm": "layer norm, float", "aten::gelu": "GELU, float", "aten::_softmax": "softmax, float",
    "aten::embedding": "embeddings, float", "aten::index_select": "embeddings, float",
    "aten::mul": "elementwise (int8: rescale outputs)", "aten::add": "elementwise, float",
    "aten::copy_": "copies (weight-only: int8 weight to float)", "aten::_to_copy": "dtype casts",
    "activation quantization": "torchao, per token, with its children",
    "quantized::linear_dynamic": "fbgemm int8 linear (quantize + GEMM + dequantize)",
    "MatMulInteger": "int8 GEMM", "DynamicQuantizeMatMul": "int8 GEMM, activation quantization fused in",
    "Transpose": "attention reshapes", "Split": "attention: q, k, v", "Where": "masking",
    "BiasGelu": "GELU, float", "SkipLayerNormalization": "residual + layer norm, float", "Reshape": "reshapes",
    "aten::mkldnn_convolution": "ViT patch embedding, float", "aten::linear": "linear (dispatch)",
    "DynamicQuantizeLinear": "activation quantization", "MatMul": "float GEMM",
    "Gemm": "float GEMM", "LayerNormalization": "layer norm, float", "Softmax": "softmax, float",
    "Gelu": "GELU, float", "Erf": "GELU, float", "Mul": "elementwise", "Add": "elementwise",
    "Cast": "dtype casts", "Gather": "embeddings, float",
}


def _inclusive_quantize(events) -> tuple[float, set[int]]:
    """Total time (µs) of the outermost torchao quantization ops, and the ids of every event inside them."""
    inside: set[int] = set()
    total = 0.0

    def mark(event) -> None:
        inside.add(id(event))
        for child in event.cpu_children:
            mark(child)

    for event in events:
        if event.name in QUANTIZE_OPS and id(event) not in inside:
            parent, nested = event.cpu_parent, False
            while parent is not None:
                nested |= parent.name in QUANTIZE_OPS
                parent = parent.cpu_parent
            if not nested:
                total += event.cpu_time_total
                mark(event)
    return total, inside


@torch.no_grad()
def torch_profile(model: torch.nn.Module, batches: list[dict]) -> tuple[dict[str, float], float]:
    """Milliseconds per batch for each op (self time), and the wall time per batch."""
    from torch.profiler import ProfilerActivity, profile

    model(batches[0])
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            model(batch)
    wall = (time.perf_counter() - start) / len(batches)
    events = prof.events()
    quantize_us, inside = _inclusive_quantize(events)
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if id(event) not in inside:
            per_op[event.name] += event.self_cpu_time_total
    if quantize_us:
        per_op["activation quantization"] = quantize_us
    return {name: us / 1000 / len(batches) for name, us in per_op.items() if us > 0}, 1000 * wall


def ort_profile(path: Path, info: dict, batches: list[dict], threads: int) -> tuple[dict[str, float], float]:
    """Milliseconds per batch for each ONNX op type (kernel time), and the wall time per batch."""
    import onnxruntime as ort

    from deploy.onnx_export import OnnxModel

    model = OnnxModel(path, info, threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    model.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model(batches[0])
    start = time.perf_counter()
    for batch in batches:
        model(batch)
    wall = (time.perf_counter() - start) / len(batches)
    trace = Path(model.session.end_profiling())
    per_op: dict[str, float] = defaultdict(float)
    runs = 0
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
        runs += event.get("cat") == "Session" and event["name"] == "model_run"
    trace.unlink()
    return {name: us / 1000 / runs for name, us in per_op.items()}, 1000 * wall


def throughput(model: torch.nn.Module, batches: list[dict], threads: int, rounds: int = 2) -> float:
    """Examples per second at ``threads`` torch threads (the best of ``rounds``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            model(batches[0])
            best = float("inf")
            for _ in range(rounds):
                start = time.perf_counter()
                for batch in batches:
                    model(batch)
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return sum(int(b["labels"].shape[0]) for b in batches) / best


def profile_table(profiles: dict[str, tuple[dict[str, float], float]], top: int = 12) -> tuple[list[str], list[list]]:
    """Header and rows: the ``top`` ops by time over all variants, ms per batch of 32 for each variant."""
    totals: dict[str, float] = defaultdict(float)
    for per_op, _ in profiles.values():
        for name, ms in per_op.items():
            totals[name] += ms
    names = sorted(totals, key=totals.get, reverse=True)[:top]
    header = ["op", "what it is", *[f"{label} ms" for label in profiles]]
    rows = [[f"`{name}`", WHAT.get(name, ""), *[f"{per_op.get(name, 0.0):.1f}" for per_op, _ in profiles.values()]]
            for name in names]
    rows.append(["all others", "", *[f"{sum(ms for n, ms in per_op.items() if n not in names):.1f}"
                                     for per_op, _ in profiles.values()]])
    rows.append(["**wall time per batch**", "", *[f"**{wall:.1f}**" for _, wall in profiles.values()]])
    return header, rows
