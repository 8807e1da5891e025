"""The fusion zoo trained end to end: every registered method with its own towers, one fixed budget, several seeds.

``benchmarks/fusion_zoo.py`` compares methods on frozen shared towers, which caps every method at what those towers
learned. Here each method trains the towers too (tiny BERT 2x128 with mean pooling + ViT 4x128 at 32 px, patch 8:
``configs/experiments/zoo_towers.yaml``), from scratch, with the same data, budget, optimiser and seeds, so a
method is credited with what it makes the towers learn within the budget.

    OMP_NUM_THREADS=2 python benchmarks/fusion_zoo_end_to_end.py [--steps 300] [--seeds 0 1 2] [--methods ...]

Each run is ``train.py`` on that config with ``model.fusion.name=<method>``; its ``metrics.json`` is kept under
``--out`` and reused by later invocations (``--fresh`` retrains). Reported: test accuracy and macro-F1 of the
checkpoint with the best validation accuracy (evaluated 6 times per run, the learning curves' points), the same
accuracy with the image and with the text marked absent, trainable parameters of the whole model, and training
samples/s of the whole loop (data loading included). Writes ``docs/fusion_zoo.md`` (section ``zoo_end_to_end``)
and every run's training-loss and validation-accuracy curve to ``docs/figures/fusion_zoo_end_to_end.json``
(drawn by ``benchmarks/plots.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from _doc import logged, machine_line, markdown_table, mean_std, write_section  # noqa: E402

from fusion import list_fusions  # noqa: E402

BASELINES = ("text_only", "image_only")
CONFIG = ROOT / "configs" / "experiments" / "zoo_towers.yaml"
CURVE_EVALS = 6  # validation evaluations per run: the learning curves' points (and the checkpoint choice)
CURVES = ROOT / "docs" / "figures" / "fusion_zoo_end_to_end.json"
# A run whose test accuracy is above this has left the chance plateau (500 test examples: chance is 50 +- 2.2).
LEFT_CHANCE = 0.6


def run_one(method: str, seed: int, steps: int, dim: int, out: Path, fresh: bool) -> dict:
    """Train one method end to end (or reuse its finished run) and return the figures the table needs."""
    name = f"{method}_s{seed}"
    run = out / f"steps{steps}_dim{dim}" / name
    summary = run / "zoo_summary.json"
    if summary.is_file() and not fresh:
        return json.loads(summary.read_text())
    from crossfuse.commands import train
    from models import MultimodalModel

    t0 = time.perf_counter()
    train.main([str(CONFIG), f"run.output_dir={run.parent}", f"run.name={name}", "run.overwrite=true",
                f"run.seed={seed}", f"model.fusion.name={method}", f"model.fusion.dim={dim}",
                f"train.max_steps={steps}", "eval.modality_ablation=true", f"run.log_every={max(1, steps // 30)}",
                f"train.eval_every={max(1, steps // CURVE_EVALS)}"])
    wall = time.perf_counter() - t0
    test = json.loads((run / "metrics.json").read_text())["results"]["test"]
    speeds = logged(run, "train/samples_per_s", skip_first=True)
    model = MultimodalModel.from_pretrained(run)
    result = {"method": method, "seed": seed, "steps": steps, "dim": dim, "wall_s": wall,
              "accuracy": test["overall"]["accuracy"], "macro_f1": test["overall"]["macro_f1"],
              **ablation_accuracy(test, model.modalities),
              "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "train_samples_per_s": statistics.median(speeds) if speeds else float("nan"),
              "curve": learning_curve(run)}
    summary.write_text(json.dumps(result, indent=1))
    ablations = ", ".join(f"{k.replace('_', ' ')} {result[k]:.3f}" for k in ("no_image", "no_text")
                          if result[k] is not None)
    print(f"[end-to-end] {name:24s} acc {result['accuracy']:.3f} ({ablations}) "
          f"{result['train_samples_per_s']:.0f} samples/s, {wall:.0f} s", flush=True)
    return result


def learning_curve(run: Path) -> dict[str, list[list[float]]]:
    """The run's training loss and validation accuracy as ``[[step, value], ...]``, from its ``log.jsonl``."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    curve = {}
    for key in ("train/loss", "val/accuracy"):
        points = {}
        for r in rows:  # the first value per step: the final evaluation logs the last step's again
            if key in r:
                points.setdefault(r["step"], r[key])
        curve[key] = [[step, value] for step, value in points.items()]
    return curve


def ablation_accuracy(test: dict, modalities: tuple[str, ...]) -> dict[str, float | None]:
    """Test accuracy with the image / the text marked absent. A unimodal baseline is not ablated by the evaluation:
    without the modality it does not read it scores its own accuracy; without the one it reads, None (not run)."""
    out = {}
    for key, dropped in (("no_image", "image"), ("no_text", "text")):
        measured = test.get("ablation", {}).get(key)
        out[key] = measured["accuracy"] if measured else (
            test["overall"]["accuracy"] if dropped not in modalities else None)
    return out


def wall_range(results: dict[str, list[dict]]) -> str:
    walls = [r["wall_s"] for runs in results.values() for r in runs]
    return f"{min(walls):.0f}-{max(walls):.0f} s" if walls else "-"


def table(results: dict[str, list[dict]]) -> str:
    rows = []
    for name, runs in sorted(results.items(), key=lambda kv: -statistics.mean(r["accuracy"] for r in kv[1])):
        rows.append([f"`{name}`" + (" (baseline)" if name in BASELINES else ""), len(runs),
                     mean_std([r["accuracy"] for r in runs]),
                     f"{sum(r['accuracy'] > LEFT_CHANCE for r in runs)}/{len(runs)}",
                     mean_std([r["macro_f1"] for r in runs]),
                     *(mean_std(v) if None not in v else "-"
                       for v in ([r[k] for r in runs] for k in ("no_image", "no_text"))),
                     f"{runs[0]['params']:,}", f"{statistics.mean(r['train_samples_per_s'] for r in runs):,.0f}"])
    header = ["method", "seeds", "accuracy %", f"runs above {100 * LEFT_CHANCE:.0f}%", "macro-F1 %",
              "acc. image missing %", "acc. text missing %",
              "params (whole model)", "train samples/s (whole loop)"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of 64 examples per run")
    parser.add_argument("--dim", type=int, default=64, help="internal width of every fusion method")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fusion_zoo_end_to_end")
    parser.add_argument("--fresh", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/fusion_zoo.md")
    parser.add_argument("--table-only", action="store_true", help="train nothing: tabulate the finished runs")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the config names its data folder relative to the repository
    methods = args.methods or list_fusions()
    unknown = sorted(set(methods) - set(list_fusions()))
    if unknown:
        parser.error(f"unknown fusion methods {unknown}; registered: {', '.join(list_fusions())}")
    if args.table_only:
        found = {m: [args.out / f"steps{args.steps}_dim{args.dim}" / f"{m}_s{s}" / "zoo_summary.json"
                     for s in args.seeds] for m in methods}
        results = {m: [json.loads(p.read_text()) for p in paths if p.is_file()] for m, paths in found.items()}
        results = {m: runs for m, runs in results.items() if runs}
    else:
        results = {m: [run_one(m, s, args.steps, args.dim, args.out, args.fresh) for s in args.seeds]
                   for m in methods}
    text = (f"{machine_line()}\n\nCommand: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python "
            f"benchmarks/fusion_zoo_end_to_end.py --steps {args.steps} --dim {args.dim} --seeds "
            f"{' '.join(map(str, args.seeds))}`; each run took {wall_range(results)} of wall time here. "
            f"{args.steps} steps x batch 64 per run on the easy variant (8000 English training examples), fusion "
            f"width {args.dim}; validation every {max(1, args.steps // CURVE_EVALS)} steps; mean ± std over the seeds; "
            f"500 test examples (chance 50%).\n\n" + table(results))
    if not args.no_doc:
        write_section("fusion_zoo.md", "zoo_end_to_end", text, title="The fusion zoo")
        # The learning curves behind benchmarks/plots.py's figure (the table keeps only each run's end point).
        CURVES.parent.mkdir(parents=True, exist_ok=True)
        CURVES.write_text(json.dumps({"steps": args.steps, "dim": args.dim, "runs": {
            m: [{"seed": r["seed"], **r["curve"]} for r in runs if "curve" in r] for m, runs in results.items()}}))
    print(text, flush=True)
    return results


if __name__ == "__main__":
    main()
