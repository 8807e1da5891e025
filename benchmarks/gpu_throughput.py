"""GPU training throughput at real sizes: bert-base + vit_base_patch16_224, cross-attention fusion, bf16.

For each batch size, with and without ``torch.compile``: samples/s, model FLOPs utilisation (MFU = FLOPs of a
training step counted by ``torch.utils.flop_counter`` / step time / the GPU's peak dense bf16 FLOP/s) and peak
memory. Weights are randomly initialised (throughput does not depend on them; no download is needed) and the
batches are synthetic (text length 128, 224 px images), so the figures measure the model and the step, not the
data pipeline (``benchmarks/loop_overhead.py`` measures that).

    python benchmarks/gpu_throughput.py                          # on a GPU; writes docs/performance.md
    python benchmarks/gpu_throughput.py --batch-sizes 64 128 --peak-tflops 989
    python benchmarks/gpu_throughput.py --dry-run                # CPU, tiny sizes: checks the script runs
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _doc import machine_line, markdown_table, write_section  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from engine.config import load_config, to_dict  # noqa: E402
from models import MultimodalModel  # noqa: E402

# bert-base-uncased's shape and vocabulary, randomly initialised (the tiny-text path takes any BERT shape).
BERT_BASE = "{hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072}"
TINY_TEXT = "{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}"


def build(dry: bool, device: torch.device) -> tuple[MultimodalModel, int, int, int]:
    """The model, text length, image size and vocabulary size of the benchmark (or of the tiny dry run)."""
    vocab, seq, img = 30522, 128, 224
    overrides = [f"model.text.tiny={BERT_BASE}", "model.vision.name=vit_base_patch16_224",
                 "model.fusion.name=cross_attention", "model.fusion.dim=768", "model.fusion.dropout=0.0"]
    if dry:
        vocab, seq, img = 100, 16, 32
        overrides = [f"model.text.tiny={TINY_TEXT}", "model.vision.name=vit_tiny_patch16_224",
                     "model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}",
                     "model.fusion.name=cross_attention", "model.fusion.dim=32"]
    cfg = load_config(None, overrides)
    model = MultimodalModel(to_dict(cfg.model), 10, [str(i) for i in range(10)], False, vocab_size=vocab,
                            image_overrides={"image_size": img})
    return model.to(device), seq, img, vocab


def make_batch(batch: int, seq: int, img: int, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    ones = torch.ones(batch, dtype=torch.bool, device=device)
    return {"input_ids": torch.randint(1, vocab, (batch, seq), device=device),
            "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=device),
            "pixel_values": torch.randn(batch, 3, img, img, device=device), "text_present": ones,
            "image_present": ones, "labels": torch.randint(0, 10, (batch,), device=device)}


def measure(model: MultimodalModel, batch: dict, compile_: bool, steps: int, warmup: int,
            device: torch.device) -> dict[str, float]:
    """Seconds per optimizer step (bf16 autocast, fused AdamW), FLOPs per step, peak memory in GiB."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    forward = torch.compile(model) if compile_ else model
    dtype = torch.bfloat16

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype):
            loss = F.cross_entropy(forward(batch)["logits"].float(), batch["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:  # eager: counts the same math compile would run
        with torch.autocast(device.type, dtype=dtype):
            loss = F.cross_entropy(model(batch)["logits"].float(), batch["labels"])
        loss.backward()
    opt.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"seconds": seconds, "flops": flops, "memory_gib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's peak dense bf16 TFLOP/s (H100 SXM: 989; H200: 989; A100: 312)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--compile-batch-sizes", type=int, nargs="+", default=None,
                        help="batch sizes for the torch.compile rows (default: --batch-sizes); each compiles anew")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, works on CPU, writes no docs")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.dry_run:
        sys.exit("gpu_throughput.py measures a GPU and none is visible; use --dry-run to check the script on CPU")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.dry_run:
        args.batch_sizes, args.steps, args.warmup = [2], 1, 1
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for compile_ in ([False] if args.no_compile or args.dry_run else [False, True]):
        for bs in (args.compile_batch_sizes or args.batch_sizes) if compile_ else args.batch_sizes:
            torch.manual_seed(0)
            model, seq, img, vocab = build(args.dry_run, device)
            model.train()
            try:
                r = measure(model, make_batch(bs, seq, img, vocab, device), compile_, args.steps, args.warmup, device)
            except torch.OutOfMemoryError:
                rows.append([bs, "yes" if compile_ else "no", "out of memory", "-", "-", "-"])
                if not args.dry_run:
                    write_doc(args, rows)
                continue
            finally:
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            mfu = r["flops"] / r["seconds"] / (args.peak_tflops * 1e12) * 100
            rows.append([bs, "yes" if compile_ else "no", f"{bs / r['seconds']:.1f}", f"{r['seconds'] * 1e3:.1f}",
                         f"{mfu:.1f}%", f"{r['memory_gib']:.1f}"])
            print(rows[-1], flush=True)
            if not args.dry_run:
                write_doc(args, rows)
    if args.dry_run:
        print(markdown_table(HEADER, rows))


HEADER = ["batch", "torch.compile", "samples/s", "step ms", "MFU", "peak memory GiB"]


def write_doc(args: argparse.Namespace, rows: list[list[object]]) -> None:
    """Rewrite the docs section with the rows so far (a run cut short still leaves what it measured)."""
    text = "\n".join([
        "## GPU throughput at real sizes (`benchmarks/gpu_throughput.py`)",
        "",
        "bert-base (12x768, seq 128) + vit_base_patch16_224, cross-attention fusion (dim 768), bf16 autocast, "
        f"fused AdamW, synthetic batches; {args.steps} timed steps after {args.warmup} warm-up steps. MFU = FLOPs of "
        f"a step (torch.utils.flop_counter, forward + backward) / step time / {args.peak_tflops:g} TFLOP/s. "
        f"Command: `python benchmarks/gpu_throughput.py {' '.join(sys.argv[1:])}`.",
        "",
        markdown_table(HEADER, rows),
        "",
        machine_line(),
    ])
    path = write_section("performance.md", "gpu_throughput", text, title="Performance")
    print(text)
    print(f"written to {path}", flush=True)


if __name__ == "__main__":
    main()
