"""Cross-architecture distillation: student with distillation vs the same student trained alone; writes
docs/transfer.md#crossarch.

``python benchmarks/transfer_crossarch.py [--seeds 0 1 2] [--student-steps 60] [--out runs/crossarch]``

Task: name the shape of the object (circle / square / triangle / cross) in the shapes benchmark's images (32 px,
the rows whose statement is true, the shape word read from it), written as a ``jsonl`` dataset. Shape is the slow
part for tiny towers (colour is learned at once), so the students have something to gain.

Teachers (``train.task=classification`` on every label, trained once, reused from ``--out`` when their run is there
with the same number of steps; ``--fresh`` retrains them):
* ``vit``: ViT 2x64, patch 4; 2500 steps (the tiny ViT learns shape slowly: 40% after 300 steps, 76% after 1200).
* ``resnet``: ResNet-10t; 300 steps.
* ``large_vit``: ViT 3x128, patch 8, fusion 128 wide; 300 steps.

Pairs (``train.task=distill``), each student also trained alone (``alpha: 0``, same steps, seeds and labels):
1. ViT teacher -> ResNet-10t student: logits (Hinton et al. 2015, T=4, alpha=0.7), all labels.
2. The same pair with 2% of the labels (``labelled_fraction: 0.02``, about 80 images): the student's cross-entropy
   sees only those rows, the teacher's soft targets cover all 4000 (an unlabelled transfer set).
3. ResNet-10t teacher -> ViT student (logits), all labels.
4. Large ViT model -> small ViT model (ViT 1x32, fusion 32 wide): logits plus fused features through a learned
   32->128 projection (FitNets, Romero et al. 2015), all labels.
Teachers' outputs are cached (no augmentation). Run with ``OMP_NUM_THREADS=1``; ``--pairs 1`` runs only the second
pair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from _doc import machine_line, markdown_table, mean_std, write_section  # noqa: E402

from crossfuse.commands import train  # noqa: E402
from data import generate_shapes, read_jsonl  # noqa: E402
from data.shapes_text import SHAPES  # noqa: E402
from transfer.zero_shot import caption_classes  # noqa: E402

SOURCE = ROOT / "data_cache" / "shapes8k"
LABELS = list(SHAPES[:4])
COMMON = ["data.name=jsonl", "data.test_split=null", "data.image_size=32", "data.mean=[0.5, 0.5, 0.5]",
          "data.std=[0.5, 0.5, 0.5]", "model.fusion.name=image_only", "train.batch_size=64", "optim.lr=1e-3",
          "eval.modality_ablation=false", "run.progress_bar=false", "run.log_every=50"]
VIT_SMALL = ["model.vision.kwargs={img_size: 32, patch_size: 4, embed_dim: 64, depth: 2, num_heads: 2}",
             "model.fusion.dim=64"]
RESNET = ["model.vision.name=resnet10t", "model.fusion.dim=64"]
TEACHERS = {  # name: (overrides, training steps)
    "vit": (VIT_SMALL, 2500),
    "resnet": (RESNET, 300),
    "large_vit": (["model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 128, depth: 3, num_heads: 4}",
                   "model.fusion.dim=128"], 300),
}
LOGITS = {"alpha": 0.7, "temperature": 4.0, "cache": True}
PAIRS = {
    "ViT teacher -> ResNet student (logits)": {"teacher": "vit", "student": RESNET, "params": LOGITS},
    "ViT teacher -> ResNet student (logits), 2% of the labels": {
        "teacher": "vit", "student": RESNET, "params": {**LOGITS, "labelled_fraction": 0.02}},
    "ResNet teacher -> ViT student (logits)": {"teacher": "resnet", "student": VIT_SMALL, "params": LOGITS},
    "large ViT model -> small ViT model (logits + features)": {
        "teacher": "large_vit",
        "student": ["model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}",
                    "model.fusion.dim=32"],
        "params": {**LOGITS, "feature_weight": 1.0},
    },
}

USAGE = """How to use it: train a teacher, then the student with `train.task=distill
train.task_params="{teacher: runs/<teacher run>, alpha: 0.5, temperature: 2.0, feature_weight: 0.0, cache: false}"`.
The loss is `(1 - alpha) * CE + alpha * logit_kd + feature_weight * feature_kd`; `alpha: 0` is the student alone.
`labelled_fraction: f` (default 1) keeps the cross-entropy to a fixed pseudo-random share f of the training rows
(the same rows every epoch), so the other rows act as an unlabelled transfer set seen only through the teacher.
The teacher (any saved crossfuse model with the same outputs and the same image preprocessing; a mismatch is an
error naming `data.image_size` / `data.mean` / `data.std`) is frozen, kept in eval mode, run under `no_grad` and
moved to the training device; `cache: true` stores its outputs per dataset row (only valid without augmentation).
The losses live in `transfer/losses.py`: `logit_kd` (Hinton et al. 2015: KL of the softened distributions times
T², batch mean; multi-label outputs use sigmoid BCE against the teacher's soft targets), `feature_kd` (FitNets:
MSE after an optional learned projection when widths differ) and `attention_kd` (MiniLM: KL between attention
maps `(B, heads, L, L)` per query, heads averaged when their counts differ, padded queries masked). The
`distill` task uses the first two; `attention_kd` is a building block not yet wired into a task.
"""


def write_shape_dataset(out: Path) -> Path:
    """The true English rows of the shapes benchmark, labelled with the shape their statement names."""
    generate_shapes(SOURCE, n_train=8000, image_size=32)  # a no-op when it is already there
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        rows = [r for r in read_jsonl(SOURCE / f"{split}.jsonl", SOURCE, languages=["en"]).records if r["label"] == 1]
        classes = caption_classes([r["text"] for r in rows], LABELS)
        lines = [json.dumps({"id": r["id"], "img": r["image"], "text": None, "label": int(c), "lang": "en"})
                 for r, c in zip(rows, classes)]
        (out / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (out / "labels.json").write_text(json.dumps(LABELS))
    return out


def accuracy(out: Path, name: str, overrides: list[str]) -> float:
    res = train.main(overrides + [f"run.output_dir={out}", f"run.name={name}", "run.overwrite=true"])
    return float(res["results"]["val"]["overall"]["accuracy"])


def teacher_run(out: Path, name: str, common: list[str], fresh: bool) -> tuple[Path, float]:
    """The trained teacher ``name`` and its validation accuracy; an existing run with the same steps is reused."""
    overrides, steps = TEACHERS[name]
    run = out / f"teacher_{name}"
    if not fresh and (run / "metrics.json").is_file() and (run / "model").is_dir():
        saved = json.loads((run / "metrics.json").read_text())
        if saved["steps"] == steps:
            return run, float(saved["results"]["val"]["overall"]["accuracy"])
    return run, accuracy(out, run.name, common + overrides + [f"train.max_steps={steps}"])


def task_params(params: dict, teacher: Path) -> str:
    return "train.task_params={" + ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}"
                                             for k, v in {**params, "teacher": teacher}.items()) + "}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--student-steps", type=int, default=60)
    parser.add_argument("--pairs", type=int, nargs="+", default=list(range(len(PAIRS))),
                        help="teacher-student pairs to run, numbered from 0 in the order above")
    parser.add_argument("--out", default=None, help="folder for the data and runs (default: a temporary folder)")
    parser.add_argument("--fresh", action="store_true", help="retrain teachers found in --out")
    parser.add_argument("--no-doc", action="store_true", help="print the results without writing the doc")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="crossarch-"))
    t0 = time.perf_counter()
    common = COMMON + [f"data.root={write_shape_dataset(out / 'shape_data')}"]
    results: dict[str, dict[str, list[float]]] = {}
    for p, (pair, spec) in enumerate(PAIRS.items()):
        if p not in args.pairs:
            continue
        teacher, teacher_acc = teacher_run(out, spec["teacher"], common, args.fresh)
        row = results[pair] = {"teacher": [teacher_acc], "alone": [], "distilled": []}
        alone = {**spec["params"], "alpha": 0.0, "feature_weight": 0.0}  # the same rows and labels, no teacher term
        for seed in args.seeds:
            student = common + spec["student"] + [f"train.max_steps={args.student_steps}", f"run.seed={seed}",
                                                  "train.task=distill"]
            row["alone"].append(accuracy(out, f"alone{p}_s{seed}", student + [task_params(alone, teacher)]))
            row["distilled"].append(accuracy(out, f"kd{p}_s{seed}", student + [task_params(spec["params"], teacher)]))
            print(pair, seed, {k: v[-1] for k, v in row.items()}, flush=True)
    minutes = (time.perf_counter() - t0) / 60
    (out / "results.json").write_text(json.dumps({"results": results, "minutes": minutes}, indent=1))
    text = render(results, args, minutes)
    print(text)
    if not args.no_doc:
        print("wrote", write_section("transfer.md", "crossarch", text, title="Transfer"))
    return results


def render(results: dict[str, dict[str, list[float]]], args: argparse.Namespace, minutes: float) -> str:
    load = os.getloadavg()[0]  # the machine is shared: a busy one stretches the minutes
    teacher_text = ", ".join(f"`{name}` {steps} steps" for name, (_, steps) in TEACHERS.items())
    table = markdown_table(
        ["pair", "teacher", "student alone", "student + distillation", "difference (points)"],
        [[pair, mean_std(r["teacher"]), mean_std(r["alone"]), mean_std(r["distilled"]),
          f"{100 * (statistics.mean(r['distilled']) - statistics.mean(r['alone'])):+.1f}"]
         for pair, r in results.items()])
    per_seed = markdown_table(
        ["pair", "seed", "alone", "distilled"],
        [[pair, s, f"{100 * a:.1f}", f"{100 * d:.1f}"] for pair, r in results.items()
         for s, a, d in zip(args.seeds, r["alone"], r["distilled"])])
    return f"""## Cross-architecture distillation

{USAGE}
`python benchmarks/transfer_crossarch.py --seeds {' '.join(map(str, args.seeds))} --student-steps \
{args.student_steps}` (OMP_NUM_THREADS=1, {minutes:.0f} min,
load average {load:.0f} at the end). Task: the shape
of the object (4 classes, chance 25%) in the 4000 training / 250 validation images (32 px) of the shapes benchmark
whose statement is true. Teachers, trained once on every label: {teacher_text}. Students: {args.student_steps} steps
of 64 images with `train.task=distill`, alone (`alpha: 0`: cross-entropy on the labelled rows only) or distilled
(alpha 0.7 on the distillation term, T = 4; the last pair adds fused-feature matching through a learned
projection); with `labelled_fraction: 0.02` the cross-entropy sees 2% of the rows (the same ones alone and
distilled) and the distillation term all of them.
Validation accuracy in percent, mean ± std over {len(args.seeds)} seeds. {machine_line()}

{table}

{per_seed}
"""


if __name__ == "__main__":
    main()
