"""The fusion zoo on frozen towers: every registered fusion method on the embedded shapes benchmark's variants.

Protocol (frozen towers, so 20 methods x 3 seeds fit a 2-core CPU):

1. Towers: per variant, train the tiny text tower (2-layer BERT, mean pooling) and vision tower (4-block ViT, 32 px,
   patch 8) with ``product`` fusion on that variant: ``train.py configs/experiments/zoo_towers.yaml`` for ``easy``;
   the other variants start from the easy towers (from scratch they stay at chance loss for hundreds of steps).
2. Features: freeze those towers and run them once over the variant's train/test splits (eval mode, so the
   features are deterministic): token features, masks and pooled vectors.
3. Methods: for every registered method and seed, train a fresh fusion module + head on the cached features for a
   fixed number of steps (AdamW, cosine schedule, batch 64, one width ``--dim`` for all), then report the test
   metrics of the final weights, the same metrics with the image and with the text marked absent (the ``present``
   flags the model's ``drop=`` ablation sets), the trainable parameter count and the training / evaluation
   samples/s of fusion + head.

Frozen towers make every method start from the same features, and cap every method at what those features hold;
``benchmarks/fusion_zoo_end_to_end.py`` trains each method with its own towers instead.

``--towers attributes`` swaps stage 1 for towers that know colours and shapes but were never trained to fuse: a
text tower trained to name the colour+shape combination a statement mentions (20 classes) and a ResNet-10t image
tower with output stride 8 (a 4x4 map of local features at 32 px) trained to name the colour and the shape of the
single object in easy images (multi-label, 5 + 4 classes), both on the easy variant's English data. On ``binding``
this makes the question the fusion method's alone: whether it binds a colour to a shape at the same place.

Every stage is cached under ``--out`` (the tower runs, ``features_<variant>.pt``, ``results/<variant>/<method>_s<seed>
.json``), so a rerun after a crash only does what is missing. ``--fresh`` redoes the method runs.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/fusion_zoo.py [--variants easy binding] [--seeds 0 1 2] [--steps 600]
[--towers product|attributes]``
(``--table-only`` rewrites ``docs/fusion_zoo.md`` from cached results). Results table: ``docs/fusion_zoo.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from _doc import machine_line, markdown_table, mean_std, write_section  # noqa: E402

from engine.builders import build_dataset, build_loader, build_tokenizer  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.metrics import classification_metrics  # noqa: E402
from engine.optim import build_optimizer, build_scheduler  # noqa: E402
from fusion import ModalityFeatures, create_fusion, list_fusions  # noqa: E402
from models import MultimodalModel  # noqa: E402
from models.heads import ClassificationHead  # noqa: E402

BATCH, LR, WEIGHT_DECAY, WARMUP, CLIP = 64, 1e-3, 0.01, 0.05, 1.0
DROPOUT = 0.1
# Data of each variant; the towers' own config supplies everything else.
VARIANTS = {
    "easy": [],
    "hard": ["data.root=data_cache/shapes8k_hard", "data.params={n_train: 8000, image_size: 32, difficulty: hard}"],
    "relation": ["data.root=data_cache/shapes8k_relation",
                 "data.params={n_train: 8000, image_size: 32, difficulty: relation}"],
    "binding": ["data.root=data_cache/shapes8k_binding",
                "data.params={n_train: 8000, image_size: 32, difficulty: binding}"],
}
BASELINES = ("text_only", "image_only")
SLOW = ("bottleneck", "co_attention", "cross_attention", "cross_attention_i2t", "mult", "perceiver", "single_stream")


class FusionHead(nn.Module):
    """A registered fusion method and the classification head the model would put on it."""

    def __init__(self, name: str, text_dim: int, image_dim: int, num_outputs: int, dim: int):
        super().__init__()
        self.fusion = create_fusion(name, text_dim, image_dim, num_outputs, dim=dim, dropout=DROPOUT)
        self.head = nn.Identity() if self.fusion.produces_logits else ClassificationHead(
            self.fusion.out_dim, num_outputs, 0, DROPOUT)

    def forward(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        read = self.fusion.modalities
        return self.head(self.fusion(text if "text" in read else None, image if "image" in read else None))


# ------------------------------------------------------------------ stages 1 and 2: towers and their features
def train_towers(out: Path, variant: str) -> Path:
    """The frozen towers for ``variant``: trained with ``product`` fusion on its training split.

    The easy towers start from scratch; the towers of every other variant start from the easy towers (a from-scratch
    start on the multi-object variants stays at chance loss for hundreds of steps) and get the same budget again.
    """
    run = out / ("zoo_towers" if variant == "easy" else f"towers_{variant}")
    if not (run / "model" / "model.safetensors").is_file():
        from crossfuse.commands import train

        overrides = [] if variant == "easy" else [*VARIANTS[variant], f"train.init_from={train_towers(out, 'easy')}"]
        print(f"training the {variant} towers -> {run}", flush=True)
        train.main([str(ROOT / "configs" / "experiments" / "zoo_towers.yaml"), f"run.output_dir={out}",
                    f"run.name={run.name}", "run.overwrite=true", *overrides])
    return run


CNN_TOWER = ["model.vision.name=resnet10t", "model.vision.kwargs={}", "model.vision.kwargs={output_stride: 8}"]


def write_attribute_data(out: Path) -> tuple[Path, Path]:
    """From the easy variant's English rows: statements labelled with the combination they name (all rows), and
    the images of true rows labelled with their object's colour and shape (multi-label)."""
    from data.shapes_text import COLOURS, SHAPES

    colours, shapes = COLOURS[:5], SHAPES[:4]
    combos = [f"{c} {s}" for c in colours for s in shapes]
    source = ROOT / "data_cache" / "shapes8k"
    text_dir, image_dir = out / "attribute_data" / "text", out / "attribute_data" / "image"
    for folder, names in ((text_dir, combos), (image_dir, colours + shapes)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "labels.json").write_text(json.dumps(list(names)))
    for split in ("train", "val"):
        texts, images = [], []
        for row in map(json.loads, (source / f"{split}.jsonl").read_text().splitlines()):
            if row["lang"] != "en":
                continue
            colour, shape = row["text"].split()[-2:]  # "there is a red circle"
            label = combos.index(f"{colour} {shape}")
            texts.append({"id": row["id"], "img": None, "text": row["text"], "label": label})
            if row["label"] == 1:  # a true statement describes the image's one object
                images.append({"id": row["id"], "img": str(source / row["img"]), "text": None,
                               "label": [colours.index(colour), len(colours) + shapes.index(shape)]})
        for folder, rows in ((text_dir, texts), (image_dir, images)):
            (folder / f"{split}.jsonl").write_text("".join(json.dumps({**r, "lang": "en"}) + "\n" for r in rows))
    return text_dir, image_dir


def train_attribute_towers(out: Path) -> Path:
    """Towers that know the attributes but never fused: see ``--towers attributes`` above. Returns a run-like folder
    (``model/``, ``config.yaml``, ``metrics.json``) holding the two towers in one model."""
    run = out / "towers_attributes"
    if (run / "model" / "model.safetensors").is_file():
        return run
    from crossfuse.commands import train
    from engine.builders import build_model
    from engine.config import save_config

    easy = train_towers(out, "easy")  # the easy data, and the text architecture and tokenizer to reuse
    text_dir, image_dir = write_attribute_data(out)  # the two runs go to out/attribute_text, out/attribute_image
    common = [f"run.output_dir={out}", "run.overwrite=true", "run.progress_bar=false", "data.name=jsonl",
              "data.test_split=null", "train.batch_size=64", "train.max_steps=300", "model.fusion.dim=64",
              "eval.modality_ablation=false"]
    print(f"training the attribute towers -> {run}", flush=True)
    text = train.main(common + ["run.name=attribute_text", f"data.root={text_dir}", "model.fusion.name=text_only",
                                "model.text.pooling=mean", f"model.text.tokenizer={easy / 'model' / 'tokenizer'}"])
    image = train.main(common + ["run.name=attribute_image", f"data.root={image_dir}", "data.image_size=32",
                                 "model.fusion.name=image_only", *CNN_TOWER])
    cfg = load_config(easy / "config.yaml", CNN_TOWER)
    tokenizer = build_tokenizer(cfg, easy / "model")
    model = build_model(cfg, 2, ["false", "true"], False, tokenizer)
    own = model.state_dict()
    for name, prefix in (("attribute_text", "text."), ("attribute_image", "vision.")):
        trained = MultimodalModel.from_pretrained(out / name).state_dict()
        own.update({k: v for k, v in trained.items() if k.startswith(prefix)})
    model.load_state_dict(own)
    model.save_pretrained(run / "model", tokenizer)
    save_config(cfg, run / "config.yaml")
    accuracy = {"text (20 combinations)": text["results"]["val"]["overall"]["accuracy"],
                "image (colour + shape, multi-label)": image["results"]["val"]["overall"]["accuracy"]}
    (run / "metrics.json").write_text(json.dumps({"attribute_accuracy": accuracy}, indent=1))
    return run


def extract_features(variant: str, out: Path, towers: str = "product") -> dict:
    """Run the frozen towers over train and test once; cached as ``features_<variant>[_attributes].pt``."""
    path = out / f"features_{variant}{'' if towers == 'product' else '_' + towers}.pt"
    if path.is_file():
        return torch.load(path)
    run = train_towers(out, variant) if towers == "product" else train_attribute_towers(out)
    cfg = load_config(run / "config.yaml", VARIANTS[variant])
    model = MultimodalModel.from_pretrained(run).eval()
    tokenizer = build_tokenizer(cfg, run / "model")
    metrics = json.loads((run / "metrics.json").read_text())
    feats: dict = {"tower_metrics": metrics["results"]["test"]["overall"] if "results" in metrics else metrics,
                   "towers": run.name}
    for split in ("train", "test"):
        dataset = build_dataset(cfg, getattr(cfg.data, f"{split}_split"), cfg.data.languages)
        loader = build_loader(cfg, dataset, tokenizer, model.image_data_config, False, list(cfg.data.languages),
                              batch_size=256)
        parts: dict[str, list[Tensor]] = {}
        start, n = time.perf_counter(), 0
        for batch in loader:
            with torch.no_grad():
                text, image = model.encode(batch)
            for key, value in (("text_tokens", text.tokens), ("text_mask", text.mask), ("text_pooled", text.pooled),
                               ("image_tokens", image.tokens), ("image_pooled", image.pooled),
                               ("labels", batch["labels"])):
                parts.setdefault(key, []).append(value)
            n += len(batch["labels"])
        if split == "test":
            feats["tower_eval_samples_per_s"] = n / (time.perf_counter() - start)
        width = max(t.shape[1] for t in parts["text_mask"])  # batches are padded to their own longest statement
        feats[split] = {k: torch.cat([pad_tokens(t, width) for t in v] if k in ("text_tokens", "text_mask") else v)
                        for k, v in parts.items()}
    torch.save(feats, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return feats


def pad_tokens(t: Tensor, width: int) -> Tensor:
    """Right-pad ``(B, N, D)`` tokens or a ``(B, N)`` mask to ``N = width`` (padding is masked out)."""
    return F.pad(t, (0, 0, 0, width - t.shape[1]) if t.ndim == 3 else (0, width - t.shape[1]))


def take(split: dict, idx: Tensor, drop: tuple[str, ...] = ()) -> tuple[ModalityFeatures, ModalityFeatures]:
    """Rows ``idx`` of a cached split as the (text, image) features a model's towers would hand to fusion."""
    present = torch.ones(len(idx), dtype=torch.bool)
    text = ModalityFeatures(split["text_tokens"][idx], split["text_mask"][idx], split["text_pooled"][idx], present)
    image_tokens = split["image_tokens"][idx]
    image = ModalityFeatures(image_tokens, torch.ones(image_tokens.shape[:2], dtype=torch.bool),
                             split["image_pooled"][idx], present)
    # What model(batch, drop=...) does: the dropped modality is marked absent for every sample.
    if "text" in drop:
        text = text._replace(present=~present)
    if "image" in drop:
        image = image._replace(present=~present)
    return text, image


# ------------------------------------------------------------------ stage 3: one method, one seed
def run_method(name: str, seed: int, feats: dict, steps: int, dim: int) -> dict:
    train, test = feats["train"], feats["test"]
    torch.manual_seed(seed)
    module = FusionHead(name, train["text_pooled"].shape[1], train["image_pooled"].shape[1], 2, dim)
    optimizer = build_optimizer(module, LR, None, WEIGHT_DECAY)
    scheduler = build_scheduler(optimizer, "cosine", steps, WARMUP)
    gen = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    module.train()
    start = time.perf_counter()
    for _ in range(steps):
        if len(order) < BATCH:  # a fresh permutation per epoch
            order = torch.cat([order, torch.randperm(len(train["labels"]), generator=gen)])
        idx, order = order[:BATCH], order[BATCH:]
        loss = F.cross_entropy(module(*take(train, idx)), train["labels"][idx])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(), CLIP)
        optimizer.step()
        scheduler.step()
    train_time = time.perf_counter() - start
    module.eval()
    result = {"method": name, "seed": seed, "steps": steps, "dim": dim, "final_loss": loss.item(),
              "params": sum(p.numel() for p in module.parameters()), "train_samples_per_s": steps * BATCH / train_time}
    labels = test["labels"].numpy()
    for key, drop in (("full", ()), ("no_image", ("image",)), ("no_text", ("text",))):
        start = time.perf_counter()
        with torch.no_grad():
            scores = torch.cat([module(*take(test, idx, drop)).softmax(-1)
                                for idx in torch.arange(len(labels)).split(256)])
        if key == "full":
            result["eval_samples_per_s"] = len(labels) / (time.perf_counter() - start)
        metrics = classification_metrics(scores.numpy(), labels)
        result[key] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    return result


def result_path(out: Path, variant: str, name: str, seed: int) -> Path:
    return out / "results" / variant / f"{name}_s{seed}.json"


def load_result(path: Path, steps: int, dim: int) -> dict | None:
    """A cached result made with the same budget, or None."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if (result["steps"], result["dim"]) == (steps, dim) else None


def cached_run(name: str, seed: int, variant: str, steps: int, dim: int, out: Path, feats: dict, fresh: bool) -> dict:
    path = result_path(out, variant, name, seed)
    cached = None if fresh else load_result(path, steps, dim)
    if cached is not None:
        return cached
    result = run_method(name, seed, feats, steps, dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)  # atomic: a crash never leaves a half-written result
    print(f"[{variant}] {name:20s} seed {seed}: acc {result['full']['accuracy']:.3f} "
          f"(no image {result['no_image']['accuracy']:.3f}, no text {result['no_text']['accuracy']:.3f}) "
          f"{result['train_samples_per_s']:.0f} train samples/s", flush=True)
    return result


# ------------------------------------------------------------------ the table
COLUMNS = (("full", "accuracy"), ("full", "macro_f1"), ("no_image", "accuracy"), ("no_text", "accuracy"))


def table(results: dict[str, list[dict]]) -> str:
    rows = []
    for name, runs in sorted(results.items(), key=lambda kv: -np.mean([r["full"]["accuracy"] for r in kv[1]])):
        rows.append([f"`{name}`" + (" (baseline)" if name in BASELINES else ""), len(runs),
                     *(mean_std([r[key][metric] for r in runs]) for key, metric in COLUMNS),
                     f"{runs[0]['params']:,}", f"{np.mean([r['train_samples_per_s'] for r in runs]):,.0f}",
                     f"{np.mean([r['eval_samples_per_s'] for r in runs]):,.0f}"])
    header = ["method", "seeds", "accuracy %", "macro-F1 %", "acc. image missing %", "acc. text missing %",
              "params (fusion+head)", "train samples/s", "eval samples/s"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["easy", "binding"], choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600, help="training steps per method and seed")
    parser.add_argument("--dim", type=int, default=64, help="internal width of every fusion method")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fusion_zoo")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--towers", choices=("product", "attributes"), default="product",
                        help="frozen towers: trained with product fusion per variant, or the attribute towers")
    parser.add_argument("--fresh", action="store_true", help="rerun the method runs even if cached")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: write the table from the cached results of the given seeds")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/fusion_zoo.md")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the configs name data folders relative to the repository
    torch.set_num_threads(args.threads)
    methods = args.methods or list_fusions()
    unknown = sorted(set(methods) - set(list_fusions()))
    if unknown:
        parser.error(f"unknown fusion methods {unknown}; registered: {', '.join(list_fusions())}")
    # Cheap methods first, so an interrupted run has most of the table; token-attention methods cost 10-20x more.
    methods = sorted(methods, key=lambda m: m in SLOW)
    for variant in args.variants:
        feats = extract_features(variant, args.out, args.towers)
        key = variant if args.towers == "product" else f"{variant}_{args.towers}"  # results and docs section
        if args.table_only:
            found = {m: [load_result(result_path(args.out, key, m, s), args.steps, args.dim) for s in args.seeds]
                     for m in methods}
            results = {m: [r for r in runs if r is not None] for m, runs in found.items()}
            results = {m: runs for m, runs in results.items() if runs}
        else:
            results = {m: [cached_run(m, s, key, args.steps, args.dim, args.out, feats, args.fresh)
                           for s in args.seeds] for m in methods}
        tower = feats["tower_metrics"]
        if args.towers == "product":
            towers_text = (f"Frozen towers `{feats['towers']}` (trained with `product` fusion on this variant"
                           + ("" if variant == "easy" else ", starting from the easy towers") + "): test accuracy "
                           f"{100 * tower['accuracy']:.1f}% in their own run")
        else:
            towers_text = ("Frozen attribute towers `towers_attributes` (never trained to fuse; validation accuracy "
                           "of their own runs: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in
                                                             tower["attribute_accuracy"].items()) + ")")
        towers_arg = "" if args.towers == "product" else f" --towers {args.towers}"
        text = (f"{machine_line()}\n\nCommand: `OMP_NUM_THREADS=1 python benchmarks/fusion_zoo.py --variants {variant} "
                f"--seeds {' '.join(map(str, args.seeds))} --steps {args.steps} --dim {args.dim}{towers_arg}` "
                f"({args.threads} torch thread per process). {args.steps} steps x batch {BATCH} per run, fusion width "
                f"{args.dim}; mean ± std over the seeds in the `seeds` column; {len(feats['test']['labels'])} test "
                f"examples (chance 50%).\n{towers_text}; tower forward at evaluation "
                f"{feats['tower_eval_samples_per_s']:,.0f} samples/s (add it to a method's evaluation cost for "
                "end-to-end speed).\n\n" + table(results))
        if not args.no_doc:
            write_section("fusion_zoo.md", f"zoo_{key}", text, title="The fusion zoo")
        print(text, flush=True)


if __name__ == "__main__":
    main()
