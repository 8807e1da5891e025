"""Merge trained models: ``python merge.py configs/merge/ties.yaml [key=value ...] [--overwrite]``.

The recipe names a method (``linear``, ``task_arithmetic``, ``ties``, ``dare``, ``slerp``, ``fisher``, ``regmean``,
``model_stock``, ``breadcrumbs``, ``della``, ``adamerging`` or ``greedy_soup``), the models (run folders), an optional
base, the method's ``params`` and per-key ``policies``. The result is a normal run folder (``OUTPUT/model/``,
``OUTPUT/config.yaml``, ``OUTPUT/merge.yaml``): evaluate it with ``python evaluate.py OUTPUT``.

The output is written completely under a temporary name and then renamed into place: it never goes into or over an
input, an existing folder is replaced only with ``--overwrite``, and a failed merge leaves nothing behind. A pure
weight merge imports torch, safetensors and the recipe loader only; methods that read data (greedy soup, Fisher,
RegMean, AdaMerging) load the data pipeline when they run.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from crossfuse.cli import flags_as_overrides, split_config_and_overrides
from engine.config import to_dict
from engine.run_folder import check_new_folder
from merging.checkpoints import Checkpoint, merge_checkpoints, save_merged
from merging.recipe import load_recipe
from merging.registry import check_params, get_merge_method


def per_model_files(models: list[str], split: str, tmp: Path, name: str, compute: Callable) -> list[Path]:
    """``compute(model, loader, run_config, out_file)`` for each model on its own data (``split`` read as for
    training), one model in memory at a time; returns the files it wrote under ``tmp``."""
    from merging.scoring import run_config, split_loader
    from models import MultimodalModel

    paths = []
    for i, path in enumerate(models):
        run_cfg, ckpt = run_config(path)
        loader = split_loader(path, split, train=True, batch_size=run_cfg.train.batch_size)
        model = MultimodalModel.from_pretrained(ckpt.model_dir)
        paths.append(compute(model, loader, run_cfg, tmp / f"{name}_{i}.safetensors"))
        del model
    return paths


def fisher_files(models: list[str], cfg, tmp: Path) -> list[Path]:
    """Each model's diagonal Fisher on its own data."""
    from merging.fisher_estimation import estimate_fisher, save_fisher

    return per_model_files(models, cfg.fisher.split, tmp, "fisher", lambda model, loader, run_cfg, out: save_fisher(
        estimate_fisher(model, loader, cfg.fisher.samples, cfg.fisher.labels, seed=run_cfg.run.seed), out))


def gram_files(models: list[str], cfg, tmp: Path) -> list[Path]:
    """Each model's input Gram matrices on its own data (towers in eval mode, streamed)."""
    from merging.activations import collect_grams, save_grams

    return per_model_files(models, cfg.activations.split, tmp, "grams", lambda model, loader, _, out: save_grams(
        collect_grams(model, loader, cfg.activations.samples), out))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="*", help="a merge recipe YAML, then dotted overrides (params.density=0.3)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output folder (never an input, never a training run)")
    args = parser.parse_args(flags_as_overrides(argv))
    path, overrides = split_config_and_overrides(args.recipe)
    cfg = load_recipe(path, overrides)
    recipe = to_dict(cfg)
    models = list(cfg.models)
    method = get_merge_method(cfg.method) if cfg.method != "greedy_soup" else None
    if method is not None:
        check_params(method, to_dict(cfg.params))  # a mistyped option fails before anything is read
    inputs = [Checkpoint.open(m) for m in models + ([cfg.base] if cfg.base else [])]  # every input readable
    protect = [folder for c in inputs for folder in c.folders]
    out = check_new_folder(cfg.output, args.overwrite, protect, "merge output")  # fail before the work
    reference = cfg.base or models[0]
    summary: dict = {"method": cfg.method, "output": str(cfg.output)}
    if cfg.method == "greedy_soup":
        from merging.scoring import held_out_scorer
        from merging.soup import greedy_soup

        soup = greedy_soup(models, held_out_scorer(models[0], cfg.greedy.split, cfg.greedy.metric))
        recipe["result"] = {"chosen": soup.chosen, "scores": soup.scores, "history": soup.history,
                            f"soup_{cfg.greedy.split}_{cfg.greedy.metric}": soup.score}
        state, reference = soup.state, soup.chosen[0]
        summary.update(chosen=soup.chosen, score=soup.score)
        print(f"greedy soup of {len(soup.chosen)}/{len(models)} models, {cfg.greedy.split} {cfg.greedy.metric} "
              f"{soup.score:.4f}: {', '.join(soup.chosen)}")
    else:
        params, policies = to_dict(cfg.params), to_dict(cfg.policies)
        with tempfile.TemporaryDirectory(prefix="crossfuse-merge-") as tmp:
            fishers = fisher_files(models, cfg, Path(tmp)) if method.needs_fisher else None
            grams = gram_files(models, cfg, Path(tmp)) if method.needs_grams else None
            if method.name == "adamerging" and "coefficients" not in params:
                from merging.adamerging import learn_coefficients

                if cfg.base is None:
                    raise ValueError("adamerging needs a base (the shared starting point): set base")
                if cfg.adamerging.heads:  # multi-task: every model keeps its own head; the output holds the base's
                    policies.setdefault("head.*", "keep_base")
                learned = learn_coefficients(models, cfg.base, cfg.adamerging, policies, Path(tmp))
                params["coefficients"] = learned["coefficients"]
                recipe["result"] = learned
                summary.update(learned)
                print(f"adamerging: entropy {learned['entropy'][0]:.4f} -> {learned['entropy'][-1]:.4f} over "
                      f"{cfg.adamerging.steps} steps")
            state = merge_checkpoints(models, method, cfg.base, params, policies, fishers, grams)
    save_merged(state, reference, out, recipe, overwrite=args.overwrite, protect=protect)
    print(f"merged {len(models)} models with {cfg.method} into {cfg.output} (evaluate: python evaluate.py "
          f"{cfg.output})")
    return summary
