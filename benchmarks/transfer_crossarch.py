"""Cross-architecture distillation: student with distillation vs the same student trained alone; writes
docs/transfer.md#crossarch.

``python benchmarks/transfer_crossarch.py [--seeds 0 1 2] [--teacher-steps 300] [--student-steps 60]``

Task: name the shape of the object (circle / square / triangle / cross) in the shapes benchmark's images (32 px,
the rows whose statement is true, the shape word read from it), written as a ``jsonl`` dataset. Shape is the slow
part for tiny towers (colour is learned at once), so the students have something to gain.

Pairs (``train.task=distill``; teachers trained once with ``train.task=classification`` and shared by the seeds):
1. ViT teacher (ViT 2x64, patch 4) -> ResNet-10t student: logits (Hinton et al. 2015, T=4, alpha=0.7).
2. The same two architectures the other way round: ResNet-10t teacher -> ViT student (logits). On 32 px shapes the
   ResNet learns shape within a few dozen steps and the tiny ViT does not, so pair 1 distils from a weaker teacher
   and pair 2 from a stronger one: the direction that decides whether distillation can help.
3. Large model (ViT 3x128, patch 8, MLP fusion 128 wide) -> small model (ViT 1x32, patch 8, fusion 32 wide):
   logits plus fused features through a learned 32->128 projection (FitNets, Romero et al. 2015).
Each student is also trained alone (``train.task=classification``, same steps and seeds). Teachers' outputs are
cached (no augmentation). Run with ``OMP_NUM_THREADS=1``; ``--pairs 2`` runs only the third pair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import train  # noqa: E402
from benchmarks._doc import machine_line, markdown_table, mean_std, write_section  # noqa: E402
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
PAIRS = {
    "ViT teacher -> ResNet student (logits)": {
        "teacher": VIT_SMALL,
        "student": ["model.vision.name=resnet10t", "model.fusion.dim=64"],
        "params": "{alpha: 0.7, temperature: 4.0, cache: true}",
    },
    "ResNet teacher -> ViT student (logits)": {
        "teacher": ["model.vision.name=resnet10t", "model.fusion.dim=64"],
        "student": VIT_SMALL,
        "params": "{alpha: 0.7, temperature: 4.0, cache: true}",
    },
    "large ViT model -> small ViT model (logits + features)": {
        "teacher": ["model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 128, depth: 3, num_heads: 4}",
                    "model.fusion.dim=128"],
        "student": ["model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}",
                    "model.fusion.dim=32"],
        "params": "{alpha: 0.7, temperature: 4.0, feature_weight: 1.0, cache: true}",
    },
}

USAGE = """How to use it: train a teacher, then the student with `train.task=distill
train.task_params="{teacher: runs/<teacher run>, alpha: 0.5, temperature: 2.0, feature_weight: 0.0, cache: false}"`.
The loss is `(1 - alpha) * CE + alpha * logit_kd + feature_weight * feature_kd`; `alpha: 0` is the student alone.
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--student-steps", type=int, default=60)
    parser.add_argument("--pairs", type=int, nargs="+", default=list(range(len(PAIRS))),
                        help="teacher-student pairs to run (0: ViT -> ResNet, 1: ResNet -> ViT, 2: large -> small)")
    parser.add_argument("--out", default=None, help="folder for the data and runs (default: a temporary folder)")
    parser.add_argument("--no-doc", action="store_true", help="print the results without writing the doc")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="crossarch-"))
    t0 = time.perf_counter()
    common = COMMON + [f"data.root={write_shape_dataset(out / 'shape_data')}"]
    results: dict[str, dict[str, list[float]]] = {}
    for p, (pair, spec) in enumerate(PAIRS.items()):
        if p not in args.pairs:
            continue
        teacher = out / f"teacher{p}"
        row = results[pair] = {"teacher": [], "alone": [], "distilled": []}
        row["teacher"].append(accuracy(out, teacher.name, common + spec["teacher"] + [
            f"train.max_steps={args.teacher_steps}"]))
        for seed in args.seeds:
            student = common + spec["student"] + [f"train.max_steps={args.student_steps}", f"run.seed={seed}"]
            row["alone"].append(accuracy(out, f"alone{p}_s{seed}", student))
            row["distilled"].append(accuracy(out, f"kd{p}_s{seed}", student + [
                "train.task=distill", "train.task_params=" + spec["params"][:-1] + f", teacher: {teacher}}}"]))
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
`python benchmarks/transfer_crossarch.py --seeds {' '.join(map(str, args.seeds))} --teacher-steps \
{args.teacher_steps} --student-steps {args.student_steps}` (OMP_NUM_THREADS=1, {minutes:.0f} min,
load average {load:.0f} at the end). Task: the shape
of the object (4 classes, chance 25%) in the 4000 training / 250 validation images (32 px) of the shapes benchmark
whose statement is true. Teachers: {args.teacher_steps} steps of 64 images, trained once. Students:
{args.student_steps} steps of 64 images, alone (`train.task=classification`) or with `train.task=distill` (alpha 0.7 on
the distillation term, T = 4; the third pair adds fused-feature matching through a learned projection).
Validation accuracy in percent, mean ± std over {len(args.seeds)} seeds. {machine_line()}

{table}

{per_seed}
"""


if __name__ == "__main__":
    main()
