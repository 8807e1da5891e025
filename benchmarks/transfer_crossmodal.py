"""Cross-modal transfer on the shapes benchmark; writes docs/transfer.md#crossmodal.

``python benchmarks/transfer_crossmodal.py [--seeds 0 1 2] [--align-steps 120] [--distill-steps 80]``

Per seed (English statements, 32 px images; pairs are the rows whose statement is true):
1. Contrastive alignment (``train.task=contrastive``): tiny BERT + tiny ViT, symmetric InfoNCE; retrieval R@K on
   the validation pairs in both directions.
2. Zero-shot transfer in the aligned space: a logistic-regression head fitted on the train pairs' image
   embeddings (colour, or shape, of the object: words of the true statement) is applied to the validation
   statements' text embeddings, and the other way round; prototypes embedded from the 20 label-name texts
   ("there is a red circle") classify validation images.
3. Cross-modal distillation (``train.task=crossmodal_distill``, Gupta et al. 2016): a fresh image tower (a ResNet,
   another architecture than the teacher's ViT) learns, without labels, to map each image onto the aligned text
   teacher's embedding of its paired statement; then the teacher's text prototypes classify the student's images.
   Baseline: the same student before distillation (random weights, fresh projection).
Run with ``OMP_NUM_THREADS=1``. The doc's figures took 31 min of wall time on a shared 2-core machine at load
average ~20 (seeds 1 and 2 ran as parallel ``--seeds 1`` / ``--seeds 2 --no-doc`` processes), of which each process
got only a few CPU-minutes; an idle machine needs far less.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _doc import machine_line, markdown_table, mean_std, write_section  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from crossfuse.commands import train  # noqa: E402
from data.shapes_text import COLOURS, SHAPES  # noqa: E402
from engine.builders import build_dataset, build_loader  # noqa: E402
from engine.config import load_config, to_dict  # noqa: E402
from models import MultimodalModel  # noqa: E402
from models.folder import load_task_state  # noqa: E402
from transfer.contrastive import ContrastiveTask  # noqa: E402
from transfer.zero_shot import (  # noqa: E402
    caption_classes,
    chance_rate,
    encode_texts,
    load_aligned,
    prototype_classify,
    transfer_head,
)

COMMON = [
    "data.root=data_cache/shapes8k", "data.params={n_train: 8000, image_size: 32}", "data.image_size=32",
    "data.languages=[en]", "data.eval_languages=[en]", "data.test_split=null",
    "model.text.tiny={hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 128}",
    "model.fusion.dim=64", "train.batch_size=96", "optim.lr=1e-3", "run.progress_bar=false", "run.log_every=50",
]
TEACHER = ["model.vision.kwargs={img_size: 32, patch_size: 4, embed_dim: 64, depth: 2, num_heads: 2}"]
# The student's tower is a ResNet; the teacher's mean/std are kept so both see the same pixels.
STUDENT = ["model.vision.name=resnet10t", "data.mean=[0.5, 0.5, 0.5]", "data.std=[0.5, 0.5, 0.5]"]
PROMPTS = [f"there is a {c} {s}" for c in COLOURS[:5] for s in SHAPES[:4]]
USAGE = """How to use it:

- Align the towers: `python train.py configs/experiments/quickstart.yaml model.fusion.name=concat
  train.task=contrastive train.task_params="{dim: 64, temperature: 0.07, pairs: positive, dedupe: true}"
  train.best_metric=r@1_mean`. `pairs: positive` trains on the rows labelled true (a false statement does not describe
  its image), `all` on every row; `dedupe` makes rows with the same caption positives of each other. Validation
  reports `i2t_r@{1,5,10}`, `t2i_r@{1,5,10}`, `r@1_mean` and `chance_r@1`; the projections and temperature are
  saved with the model as `model/task_state.safetensors`.
- Zero-shot (`transfer/zero_shot.py`): `load_aligned(run)` returns the model and its projections, `encode_texts`
  embeds label-name prompts, `prototype_classify` labels images by the nearest prompt, `transfer_head` fits a
  head on one modality's embeddings and scores it on the other's.
- Cross-modal distillation: `train.task=crossmodal_distill train.task_params="{teacher: runs/<aligned run>}"
  train.best_metric=i2t_r@1` trains the student's image tower (any timm model; the teacher's image mean/std must
  match, e.g. `data.mean=[0.5,0.5,0.5] data.std=[0.5,0.5,0.5]`) to the teacher's text embedding of the paired
  caption. The teacher is frozen, in eval mode, under `no_grad`, its outputs cached per row (`cache: true`).
"""


def embeddings(run_dir: Path, split: str, image_fn=None) -> dict:
    """Aligned embeddings (``text``, ``image``) and statements of the true en pairs of ``split``."""
    cfg = load_config(str(run_dir / "config.yaml"), [])
    model, heads = load_aligned(run_dir)
    task = ContrastiveTask(dim=heads.text.out_features)
    task.extras["align"] = heads
    dataset = build_dataset(cfg, split, ["en"])
    dataset.records = [r for r in dataset.records if r["label"] == 1]
    tok = AutoTokenizer.from_pretrained(run_dir / "model" / "tokenizer")
    loader = build_loader(cfg, dataset, tok, model.image_data_config, False, ["en"], batch_size=256)
    emb = task.embed_loader(Accelerator(cpu=True), model, loader)
    texts = [dataset.records[i]["text"] for i in emb["index"].tolist()]
    return {"text": emb["text"], "image": emb["image"], "captions": texts, "model": model, "heads": heads, "tok": tok}


def zero_shot(run_dir: Path, seed: int) -> dict[str, float]:
    tr, va = embeddings(run_dir, "train"), embeddings(run_dir, "val")
    out = {}
    for name, words in (("colour", list(COLOURS[:5])), ("shape", list(SHAPES[:4]))):
        y_tr, y_va = caption_classes(tr["captions"], words), caption_classes(va["captions"], words)
        out[f"{name}_img2txt"] = transfer_head(tr["image"], y_tr, va["text"], y_va, seed)
        out[f"{name}_txt2img"] = transfer_head(tr["text"], y_tr, va["image"], y_va, seed)
        out[f"{name}_img2img"] = transfer_head(tr["image"], y_tr, va["image"], y_va, seed)
        out[f"{name}_chance"] = chance_rate(y_va)
    protos = encode_texts(va["model"], va["heads"], va["tok"], PROMPTS)
    truth = np.array([PROMPTS.index(c) for c in va["captions"]])
    out["prototype"] = float((prototype_classify(va["image"], protos).numpy() == truth).mean())
    out["prototype_chance"] = chance_rate(truth)
    return out


@torch.no_grad()
def student_prototype_accuracy(student_dir: Path | None, teacher_dir: Path, seed: int) -> float:
    """Accuracy of the teacher's text prototypes on the student's val image embeddings (no student: untrained)."""
    teacher, heads = load_aligned(teacher_dir)
    tok = AutoTokenizer.from_pretrained(teacher_dir / "model" / "tokenizer")
    protos = encode_texts(teacher, heads, tok, PROMPTS)
    if student_dir is not None:
        cfg = load_config(str(student_dir / "config.yaml"), [])
        student = MultimodalModel.from_pretrained(student_dir).eval()
        projection = torch.nn.Linear(student.vision.dim, protos.shape[1])
        load_task_state(torch.nn.ModuleDict({"projection": projection}), student_dir / "model")
    else:  # the same student architecture, untrained
        cfg = load_config(None, COMMON + STUDENT + ["model.fusion.name=concat"])
        torch.manual_seed(seed)
        overrides = {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
        student = MultimodalModel(to_dict(cfg.model), 2, vocab_size=len(tok), image_overrides=overrides).eval()
        projection = torch.nn.Linear(student.vision.dim, protos.shape[1])
    dataset = build_dataset(cfg, "val", ["en"])
    dataset.records = [r for r in dataset.records if r["label"] == 1]
    loader = build_loader(cfg, dataset, tok, student.image_data_config, False, ["en"], batch_size=256)
    hits, n = 0, 0
    for batch in loader:
        img = F.normalize(projection(student.vision(batch["pixel_values"]).pooled), dim=-1)
        truth = torch.tensor([PROMPTS.index(dataset.records[i]["text"]) for i in batch["index"].tolist()])
        hits += int((prototype_classify(img, protos) == truth).sum())
        n += len(truth)
    return hits / n


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--align-steps", type=int, default=120)
    parser.add_argument("--distill-steps", type=int, default=80)
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder)")
    parser.add_argument("--no-doc", action="store_true", help="print the results without writing the doc")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="crossmodal-"))
    t0 = time.perf_counter()
    rows: dict[str, list[float]] = {}
    for seed in args.seeds:
        teacher = out / f"align_s{seed}"
        res = train.main(COMMON + TEACHER + [
            f"run.output_dir={out}", f"run.name={teacher.name}", f"run.seed={seed}", "run.overwrite=true",
            "model.fusion.name=concat", "train.task=contrastive", "train.task_params={dim: 64}",
            f"train.max_steps={args.align_steps}", "train.best_metric=r@1_mean"])
        values = dict(res["results"]["val"]["overall"])
        values.update(zero_shot(teacher, seed))
        student = out / f"xmd_s{seed}"
        train.main(COMMON + STUDENT + [
            f"run.output_dir={out}", f"run.name={student.name}", f"run.seed={seed}", "run.overwrite=true",
            "model.fusion.name=concat", "train.task=crossmodal_distill", f"train.task_params={{teacher: {teacher}}}",
            f"train.max_steps={args.distill_steps}", "train.best_metric=i2t_r@1"])
        values["student_prototype"] = student_prototype_accuracy(student, teacher, seed)
        values["untrained_prototype"] = student_prototype_accuracy(None, teacher, seed)
        for k, v in values.items():
            rows.setdefault(k, []).append(float(v))
        print(f"seed {seed}: " + json.dumps({k: round(v, 4) for k, v in values.items()}), flush=True)
    minutes = (time.perf_counter() - t0) / 60
    (out / "results.json").write_text(json.dumps({"rows": rows, "minutes": minutes}, indent=1))
    text = render(rows, args, minutes)
    print(text)
    if not args.no_doc:
        print("wrote", write_section("transfer.md", "crossmodal", text, title="Transfer"))
    return rows


def render(rows: dict[str, list[float]], args: argparse.Namespace, minutes: float) -> str:
    load = os.getloadavg()[0]  # the machine is shared: a busy one stretches the minutes
    m = lambda k: mean_std(rows[k])  # noqa: E731
    retrieval = markdown_table(
        ["direction", "R@1", "R@5", "R@10", "chance R@1"],
        [["image → text", m("i2t_r@1"), m("i2t_r@5"), m("i2t_r@10"), m("chance_r@1")],
         ["text → image", m("t2i_r@1"), m("t2i_r@5"), m("t2i_r@10"), m("chance_r@1")]])
    heads = markdown_table(
        ["attribute", "head fit on images, applied to images (reference)", "images → texts", "texts → images",
         "chance (majority)"],
        [[name, m(f"{name}_img2img"), m(f"{name}_img2txt"), m(f"{name}_txt2img"), m(f"{name}_chance")]
         for name in ("colour", "shape")])
    protos = markdown_table(
        ["image embeddings from", "accuracy (20 classes)", "chance (majority)"],
        [["aligned ViT image tower (contrastive)", m("prototype"), m("prototype_chance")],
         ["ResNet student, distilled from the text teacher (crossmodal_distill)", m("student_prototype"),
          m("prototype_chance")],
         ["same ResNet student, untrained", m("untrained_prototype"), m("prototype_chance")]])
    return f"""## Cross-modal transfer

{USAGE}
`python benchmarks/transfer_crossmodal.py --seeds {' '.join(map(str, args.seeds))} --align-steps {args.align_steps} \
--distill-steps {args.distill_steps}` (OMP_NUM_THREADS=1, {minutes:.0f} min,
load average {load:.0f} at the end). Shapes benchmark (`easy`, 8000 train
images at 32 px, English statements); the pairs are the rows whose statement is true, so each image is described
by one of 20 statements ("there is a red circle"). Mean ± std over {len(args.seeds)} seeds, percent, validation
pairs (n = 250). {machine_line()}

**Contrastive alignment** (`train.task=contrastive`: tiny BERT 2x64 + ViT 2x64 at patch 4, symmetric InfoNCE
with a learned temperature, {args.align_steps} steps of 96 rows). A retrieved item counts as correct when its statement
equals the query's (repeated statements are equivalent), so chance R@1 is the mean frequency of a statement.

{retrieval}

**Zero-shot head transfer.** A logistic-regression head is fitted on the aligned embeddings of the training pairs
of one modality, with the object's colour or shape (read from the true statement) as label, and applied unchanged
to the validation embeddings of the other modality.

{heads}

**Prototypes from label names and cross-modal distillation.** The 20 label-name texts are embedded by the aligned
text tower; an image takes the class of the nearest prototype. `crossmodal_distill` (Gupta et al. 2016) trains a
ResNet-10t image tower with a linear projection, for {args.distill_steps} steps and without labels, to map each image
onto the frozen text teacher's embedding of its paired statement; the teacher's prototypes then classify the student's
images.

{protos}
"""


if __name__ == "__main__":
    main()
