"""Merging experiment on the embedded benchmark: fine-tune several models from one shared base, merge them.

A base is trained briefly on English; from it, one model is fine-tuned per language (different seeds, one with a
doubled learning rate), plus a joint all-language fine-tune as a reference. The language models are merged with
uniform soup, greedy soup, task arithmetic, TIES and DARE (lambda chosen on the validation split from 0.1-1.0; every
lambda's validation and test accuracy go to docs/figures/merging_lambda.json for the interpolation figure), and by
multi-teacher distillation starting from the uniform soup. Every model is scored on the test split, overall and
per language; the table goes to docs/merging.md.

Run: ``OMP_NUM_THREADS=1 python benchmarks/merging_experiment.py`` (21 minutes when measured on a heavily shared
2-core machine; ``--reuse`` keeps runs already trained in ``--out``). Smaller than configs/experiments/quickstart.yaml
(2-layer 64-wide towers, product fusion, a few hundred steps).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from _doc import machine_line, markdown_table, write_section  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from crossfuse.commands import evaluate  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.trainer import Trainer  # noqa: E402
from merging import greedy_soup, merge_checkpoints, save_merged  # noqa: E402
from merging.scoring import held_out_scorer  # noqa: E402
from models import MultimodalModel, load_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LANGS = ["de", "en", "es", "fr", "ru"]
LAMBDAS = tuple(round(0.1 * i, 1) for i in range(1, 11))  # task arithmetic / TIES / DARE scales, chosen on val
CURVES = ROOT / "docs" / "figures" / "merging_lambda.json"  # every scale's val/test accuracy, for plots.py


def common(args) -> list[str]:
    # The towers of benchmarks/fusion_zoo.py, narrower: a product fusion learns this task within a few hundred
    # steps on CPU, where the quickstart's cross-attention does not yet.
    return [
        f"data.root={ROOT / 'data_cache' / f'shapes{args.n_train // 1000}k'}",
        f"data.params={{n_train: {args.n_train}, image_size: 32}}", "data.image_size=32",
        "model.text.tiny={hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 128}",
        "model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 64, depth: 2, num_heads: 2, "
        "global_pool: avg, class_token: false}",
        "model.fusion.name=product", "model.fusion.dim=64",
        "train.batch_size=64", "eval.batch_size=500", "eval.modality_ablation=false",
        "run.progress_bar=false", "run.log_every=100", f"run.output_dir={args.out}", "run.overwrite=true",
    ]


def train(args, name: str, overrides: list[str], init: Path | None = None) -> Path:
    """Train one run; ``init`` loads a saved model's weights (head included) first: the shared starting point."""
    if args.reuse and (Path(args.out) / name / "metrics.json").is_file():
        return Path(args.out) / name
    cfg = load_config(None, common(args) + [f"run.name={name}"] + overrides)
    trainer = Trainer(cfg)
    if init is not None:
        load_state(trainer.model, load_file(str(init / "model" / "model.safetensors")), source=str(init))
    trainer.fit()
    return Path(args.out) / name


def test_scores(run: Path) -> dict[str, float]:
    res = evaluate.main([str(run), "data.eval_languages=null", "--out", str(run / "eval_all.json")])["test"]
    out = {"all": res["overall"]["accuracy"]}
    out.update({lang: m["accuracy"] for lang, m in res["per_language"].items()})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_merging"))
    parser.add_argument("--n-train", type=int, default=8000, help="training images (x5 languages); val/test 500")
    parser.add_argument("--base-steps", type=int, default=400)
    parser.add_argument("--ft-steps", type=int, default=150)
    parser.add_argument("--distill-steps", type=int, default=100)
    parser.add_argument("--reuse", action="store_true", help="keep runs already trained in --out (after a crash)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not args.reuse:
        shutil.rmtree(out)
    base = train(args, "base", [f"train.max_steps={args.base_steps}", "data.languages=[en]", "optim.lr=2e-3"])
    fine: dict[str, Path] = {}
    for i, lang in enumerate(LANGS):
        lr = "1e-3" if lang == "fr" else "5e-4"  # one model with another learning rate
        fine[f"ft_{lang}"] = train(args, f"ft_{lang}", [
            f"train.max_steps={args.ft_steps}", f"data.languages=[{lang}]", f"data.eval_languages=[{lang}]",
            f"run.seed={i + 1}", f"optim.lr={lr}", "optim.warmup_ratio=0.0"], init=base)
    joint = train(args, "ft_joint", [f"train.max_steps={args.ft_steps}", "run.seed=9", "optim.lr=5e-4",
                                     "optim.warmup_ratio=0.0"], init=base)
    t_train = time.perf_counter() - t0
    members = list(fine.values())
    scorer = held_out_scorer(base, "val")  # the base run validates on every language
    test_scorer = held_out_scorer(base, "test")  # only for the lambda curves: the choice is made on val
    probe = MultimodalModel.from_pretrained(base)

    def val_test_score(state) -> tuple[float, float]:
        load_state(probe, state)
        return scorer(probe), test_scorer(probe)

    merged: dict[str, tuple[Path, str]] = {}
    state = merge_checkpoints(members, "linear")
    merged["uniform soup"] = (save_merged(state, members[0], out / "m_uniform", {"method": "linear"},
                                              overwrite=True), "")
    soup = greedy_soup(members, scorer)
    merged["greedy soup"] = (save_merged(soup.state, soup.chosen[0], out / "m_greedy", {"method": "greedy_soup"},
                                         overwrite=True),
                             f"{len(soup.chosen)} of {len(members)} models")
    grids = {"task_arithmetic": {}, "ties": {"density": 0.2}, "dare": {"p": 0.5, "seed": 0}}
    curves = {"base": val_test_score(load_file(str(base / "model" / "model.safetensors"))),
              "uniform soup": val_test_score(state), "scales": {}}
    for method, params in grids.items():
        best, curve = None, []
        for lam in LAMBDAS:
            st = merge_checkpoints(members, method, base=base, params={**params, "scale": lam})
            score, test = val_test_score(st)
            curve.append([lam, score, test])
            if best is None or score > best[0]:
                best = (score, lam, st)
        curves["scales"][method.replace("_", " ")] = curve
        path = save_merged(best[2], base, out / f"m_{method}", {"method": method, "params": {**params,
                                                                                             "scale": best[1]}},
                           overwrite=True)
        merged[method.replace("_", " ")] = (path, f"lambda={best[1]} (val)" + (
            f", density {params['density']}" if "density" in params else "") + (
            f", p {params['p']}" if "p" in params else ""))
    teachers = "[" + ",".join(str(m) for m in members) + "]"
    merged["distillation (from uniform soup)"] = (train(args, "m_distill", [
        f"train.max_steps={args.distill_steps}", "train.task=multi_teacher_distill", "optim.lr=5e-4",
        f"train.task_params={{teachers: {teachers}, temperature: 2.0, alpha: 1.0}}", "optim.warmup_ratio=0.0",
    ], init=merged["uniform soup"][0]), f"{args.distill_steps} steps, all-language text, no labels (alpha=1)")
    rows, scores = [], {}
    for name, path in [("base (en, shared start)", base), *[(f"fine-tuned on {k[3:]}", v) for k, v in fine.items()],
                       ("joint fine-tune on all languages (reference)", joint)] + \
            [(k, v[0]) for k, v in merged.items()]:
        scores[name] = test_scores(path)
    notes = {k: v[1] for k, v in merged.items()}
    for name, s in scores.items():
        rows.append([name, f"{s['all']:.3f}", *[f"{s.get(lang, float('nan')):.3f}" for lang in LANGS],
                     f"{min(s[lang] for lang in LANGS):.3f}", notes.get(name, "")])
    best_single = max(scores[f"fine-tuned on {lang}"]["all"] for lang in LANGS)
    soup_val, single_val = soup.score, max(soup.scores.values())
    total = time.perf_counter() - t0
    text = "\n".join([
        "### Merging fine-tuned models (measured)", "",
        machine_line() + f" `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python "
        f"benchmarks/merging_experiment.py` (defaults: {args.n_train} train / 500 val / 500 test images x 5 "
        f"languages, base {args.base_steps} steps on English, {args.ft_steps} fine-tuning steps per "
        f"model, {args.distill_steps} distillation steps); total {total / 60:.1f} min, of which training "
        f"{t_train / 60:.1f} min.", "",
        "Test accuracy, overall and per language (chance 0.5). Merges combine the five single-language models.", "",
        markdown_table(["model", "all", *LANGS, "worst language", "notes"], rows), "",
        f"- Greedy soup on its held-out (validation, all languages) set: {soup_val:.3f} vs best single model "
        f"{single_val:.3f} (never lower by construction); on test: {scores['greedy soup']['all']:.3f} vs best "
        f"single {best_single:.3f}.",
        "- Best single-language model overall: {:.3f}; best merge overall: {:.3f} ({}).".format(
            best_single, *max((scores[k]["all"], k) for k in merged)),
    ])
    write_section("merging.md", "merging_experiment", text, title="Merging")
    CURVES.parent.mkdir(parents=True, exist_ok=True)
    CURVES.write_text(json.dumps({"columns": ["lambda", "val accuracy", "test accuracy"], **curves}))
    print(text)


if __name__ == "__main__":
    main()
