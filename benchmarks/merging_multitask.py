"""Multi-task merging of multimodal models (FusionBench-style table): K tasks, one shared base, one merged model.

The four variants of the embedded shapes benchmark are the tasks (``easy``, ``binding``, ``relation``, ``hard``;
English only): each is fine-tuned from one shared base (trained briefly on ``easy``), with its own head. A merge
combines the towers and the fusion module of the K fine-tunes; each task is then evaluated with its own head on the
merged towers. References: each individual fine-tune on its own task, and a jointly trained model (one model
fine-tuned from the same base on the union of the four training sets, one shared head: every task's labels are
true/false). Normalised accuracy = merged / individual, per task, averaged. The scale of the task-vector methods is
chosen on the mean validation accuracy over tasks from ``LAMBDAS``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/merging_multitask.py`` (writes docs/merging.md and
docs/merging_multitask.png; ``--seeds 1`` and fewer steps for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import torch  # noqa: E402
from _doc import DOCS, machine_line, markdown_table, write_section  # noqa: E402

from engine.config import load_config  # noqa: E402
from engine.trainer import Trainer  # noqa: E402
from merging import merge_checkpoints  # noqa: E402
from merging.activations import collect_grams, save_grams  # noqa: E402
from merging.adamerging import learn_coefficients  # noqa: E402
from merging.scoring import held_out_scorer, split_loader  # noqa: E402
from models import MultimodalModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["easy", "binding", "relation", "hard"]
LAMBDAS = (0.3, 0.6, 1.0)
HEAD = {"head.*": "skip"}  # merged: towers and fusion; every task keeps its own head


def common(args, task: str) -> list[str]:
    return [
        f"data.root={ROOT / 'data_cache' / f'shapes_mt_{task}_{args.n_train}'}",
        f"data.params={{n_train: {args.n_train}, n_val: {args.n_val}, n_test: {args.n_test}, image_size: 32, "
        f"difficulty: {task}}}",
        "data.image_size=32", "data.languages=[en]", "data.eval_languages=[en]",
        "model.text.tiny={hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 128}",
        "model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 64, depth: 2, num_heads: 2, "
        "global_pool: avg, class_token: false}",
        "model.fusion.name=product", "model.fusion.dim=64",
        "train.batch_size=64", "eval.batch_size=500", "eval.modality_ablation=false", "run.tracker=none",
        "run.progress_bar=false", "run.log_every=100", f"run.output_dir={args.out}",
    ]


REUSED: list[str] = []  # runs kept from an earlier invocation (their training time is not in this one's)


def train(args, name: str, task: str, overrides: list[str]) -> Path:
    run = Path(args.out) / name
    if (run / "metrics.json").is_file():  # kept from an earlier invocation with the same settings
        REUSED.append(name)
        return run
    cfg = load_config(None, common(args, task) + [f"run.name={name}", "run.overwrite=true"] + overrides)
    Trainer(cfg).fit()
    return run


def joint_data(args, base_runs: dict[str, Path]) -> Path:
    """The union of the tasks' train/val splits as one jsonl dataset (absolute image paths)."""
    root = Path(args.out) / "joint_data"
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        lines = []
        for task in TASKS:
            data_root = ROOT / "data_cache" / f"shapes_mt_{task}_{args.n_train}"
            for line in (data_root / f"{split}.jsonl").read_text().splitlines():
                row = json.loads(line)
                if row.get("lang") == "en":
                    row.update(id=f"{task}-{row['id']}", img=str(data_root / row["img"]))
                    lines.append(json.dumps(row))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "labels.json").write_text((ROOT / "data_cache" / f"shapes_mt_easy_{args.n_train}" / "labels.json")
                                      .read_text())
    return root


def with_towers(run: Path, state: dict[str, torch.Tensor]) -> MultimodalModel:
    """Task ``run``'s model (its own head) with the merged towers and fusion."""
    net = MultimodalModel.from_pretrained(run)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
    return net


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_merging_multitask"))
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--base-steps", type=int, default=300)
    parser.add_argument("--ft-steps", type=int, default=150)
    parser.add_argument("--joint-steps", type=int, default=300)
    parser.add_argument("--ada-steps", type=int, default=60)
    parser.add_argument("--ada-lr", type=float, default=0.05, help="AdaMerging's Adam lr (the paper: 1e-3 over far "
                        "more steps; at 1e-3 and 40 steps the coefficients do not move)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    stamp = machine_line()  # the code as it is when the run starts (later edits do not produce these figures)
    t0 = time.perf_counter()
    t_train = 0.0
    base = train(args, "base", "easy", [f"train.max_steps={args.base_steps}", "optim.lr=2e-3", "run.seed=0"])
    rows: dict[str, list[dict[str, float]]] = {}  # method -> one {task: accuracy} per seed
    notes: dict[str, str] = {}
    t_train += time.perf_counter() - t0
    for seed in range(1, args.seeds + 1):
        t1 = time.perf_counter()
        ft = {task: train(args, f"s{seed}_ft_{task}", task, [
            f"train.max_steps={args.ft_steps}", f"train.init_from={base}", f"run.seed={seed}", "optim.lr=1e-3",
            "optim.warmup_ratio=0.0"]) for task in TASKS}
        joint = train(args, f"s{seed}_joint", "easy", [
            "data.name=jsonl", f"data.root={joint_data(args, ft)}", "data.params={}", "data.allow_outside_root=true",
            "data.test_split=null", f"train.max_steps={args.joint_steps}", f"train.init_from={base}",
            f"run.seed={seed}", "optim.lr=1e-3", "optim.warmup_ratio=0.0"])
        t_train += time.perf_counter() - t1
        val = {t: held_out_scorer(ft[t], "val") for t in TASKS}
        test = {t: held_out_scorer(ft[t], "test") for t in TASKS}
        models = [ft[t] for t in TASKS]

        def scores(state, split=test, ft=ft):
            return {t: split[t](with_towers(ft[t], state)) for t in TASKS}

        def add(name, accs, note="", seed=seed):
            rows.setdefault(name, []).append(accs)
            notes.setdefault(name, note)
            print(f"seed {seed} {name}: " + ", ".join(f"{t} {a:.3f}" for t, a in accs.items()), flush=True)

        add("individual fine-tunes (reference)", {t: test[t](MultimodalModel.from_pretrained(ft[t])) for t in TASKS})
        add("joint multi-task model (reference)", {t: test[t](MultimodalModel.from_pretrained(joint)) for t in TASKS},
            f"{args.joint_steps} steps on the union, one head")
        add("base (shared start)", {t: test[t](MultimodalModel.from_pretrained(base)) for t in TASKS},
            "its easy-task head on every task")
        add("average (uniform soup)", scores(merge_checkpoints(models, "linear", policies=HEAD)))
        add("model stock", scores(merge_checkpoints(models, "model_stock", base=base, policies=HEAD)))
        grids = {"task arithmetic": ("task_arithmetic", {}), "ties": ("ties", {"density": 0.2}),
                 "breadcrumbs": ("breadcrumbs", {"density": 0.1, "gamma": 0.01}),
                 "della": ("della", {"density": 0.7, "epsilon": 0.1, "seed": seed})}
        for name, (method, params) in grids.items():
            best = None
            for lam in LAMBDAS:
                state = merge_checkpoints(models, method, base=base, params={**params, "scale": lam}, policies=HEAD)
                v = statistics.mean(scores(state, val).values())
                if best is None or v > best[0]:
                    best = (v, lam, state)
            add(name, scores(best[2]), f"lambda chosen on val from {LAMBDAS}" + "".join(
                f", {k} {v}" for k, v in params.items() if k != "seed"))
            notes[name + f" (seed {seed})"] = f"lambda={best[1]}"
        grams = []
        for i, t in enumerate(TASKS):
            net = MultimodalModel.from_pretrained(ft[t])
            grams.append(save_grams(collect_grams(net, split_loader(ft[t], "train", train=True), 256),
                                    Path(args.out) / f"s{seed}_grams_{i}.safetensors"))
        add("regmean", scores(merge_checkpoints(models, "regmean", params={"alpha": 0.9}, policies=HEAD,
                                                grams=grams)), "alpha 0.9, Grams of 256 unlabelled train examples")
        settings = SimpleNamespace(steps=args.ada_steps, lr=args.ada_lr, granularity="layer", init=0.3, split="train",
                                   batch_size=None, heads=True)
        work = Path(args.out) / f"s{seed}_adamerging"
        if work.exists():
            import shutil

            shutil.rmtree(work)
        learned = learn_coefficients(models, str(base), settings, {"head.*": "keep_base"}, work)
        state = merge_checkpoints(models, "adamerging", base=base, params={"coefficients": learned["coefficients"]},
                                  policies=HEAD)
        add("adamerging", scores(state),
            f"layer-wise, {args.ada_steps} steps at lr {args.ada_lr}, entropy on unlabelled train data")
        notes[f"adamerging (seed {seed})"] = f"entropy {learned['entropy'][0]:.3f} -> {learned['entropy'][1]:.3f}"
    total = time.perf_counter() - t0
    json.dump({"rows": rows, "notes": notes}, open(Path(args.out) / "results.json", "w"), indent=1)
    write_doc(args, rows, notes, total, t_train, stamp)


def write_doc(args, rows, notes, total, t_train, stamp) -> None:
    individual = rows["individual fine-tunes (reference)"]

    def normalised(seed_rows):
        return [statistics.mean(r[t] / ind[t] for t in TASKS) for r, ind in zip(seed_rows, individual)]

    def cell(values):
        return f"{100 * statistics.mean(values):.1f}" + (f" ± {100 * statistics.stdev(values):.1f}"
                                                          if len(values) > 1 else "")

    table = []
    for name, seed_rows in rows.items():
        per_task = [cell([r[t] for r in seed_rows]) for t in TASKS]
        avg = [statistics.mean(r.values()) for r in seed_rows]
        table.append([name, *per_task, cell(avg), cell(normalised(seed_rows)), notes.get(name, "")])
    merged = [r for r in rows if "reference" not in r and "base" not in r]
    order = sorted(merged, key=lambda n: -statistics.mean(statistics.mean(r.values()) for r in rows[n]))
    picked = "; ".join(f"seed {s}: " + ", ".join(f"{m} {notes[f'{m} (seed {s})']}" for m in
                                                 ("task arithmetic", "ties", "breadcrumbs", "della", "adamerging"))
                       for s in range(1, args.seeds + 1))
    cmd = (f"OMP_NUM_THREADS=1 python benchmarks/merging_multitask.py --n-train {args.n_train} --base-steps "
           f"{args.base_steps} --ft-steps {args.ft_steps} --joint-steps {args.joint_steps} --ada-steps "
           f"{args.ada_steps} --ada-lr {args.ada_lr} --seeds {args.seeds}")
    text = "\n".join([
        "### Multi-task merging of multimodal models (measured)", "",
        f"{stamp} `{cmd}`: total {total / 60:.1f} min wall time, of which training {t_train / 60:.1f} min"
        + (f" ({len(REUSED)} trained runs reused from an earlier invocation with the same training settings, "
           "not retrained)"
           if REUSED else "") + " "
        f"(base {args.base_steps} steps on easy; per seed 4 fine-tunes of {args.ft_steps} steps and a joint model "
        f"of {args.joint_steps} steps; {args.n_train} train / {args.n_val} val / {args.n_test} test examples per "
        f"task, English, 32x32 images; tiny towers: 2-layer BERT and ViT of width 64, product fusion).", "",
        f"Test accuracy (%) per task with its own head, mean ± std over {args.seeds} seeds; chance 50.", "",
        markdown_table(["model", *TASKS, "average", "normalised (merged / individual)", "notes"], table), "",
        f"Merges ranked by average accuracy: {' > '.join(order)}.", "",
        f"Scales picked on validation: {picked}.", "",
        "![multi-task merging](merging_multitask.png)",
    ])
    figure(rows, order)
    if not args.no_doc:
        write_section("merging.md", "merging_multitask", text)
    print(text)


def figure(rows, order) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    names = order
    width = 0.8 / len(TASKS)
    for j, task in enumerate(TASKS):
        means = [100 * statistics.mean(r[task] for r in rows[n]) for n in names]
        errs = [100 * statistics.stdev(r[task] for r in rows[n]) if len(rows[n]) > 1 else 0 for n in names]
        ax.bar([i + (j - 1.5) * width for i in range(len(names))], means, width, yerr=errs, label=task, capsize=2)
    for ref, style in (("individual fine-tunes (reference)", "--"), ("joint multi-task model (reference)", ":")):
        avg = 100 * statistics.mean(statistics.mean(r.values()) for r in rows[ref])
        ax.axhline(avg, color="black", linestyle=style, linewidth=1, label=f"{ref.split(' (')[0]}: average {avg:.1f}")
    ax.axhline(50, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%), own head")
    ax.set_ylim(40, 100)
    ax.set_title("Merging 4 fine-tunes of one base (shapes variants); mean ± std over seeds")
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    fig.savefig(DOCS / "merging_multitask.png", dpi=110)


if __name__ == "__main__":
    main()
