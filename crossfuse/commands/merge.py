"""Merge trained models: ``python merge.py configs/merge/ties.yaml [key=value ...]``.

The recipe names a method (``linear``, ``task_arithmetic``, ``ties``, ``dare``, ``slerp``, ``fisher`` or
``greedy_soup``), the models (run folders), an optional base, the method's ``params`` and per-key ``policies``.
The result is a normal run folder (``OUTPUT/model/``, ``OUTPUT/config.yaml``, ``OUTPUT/merge.yaml``): evaluate it
with ``python evaluate.py OUTPUT``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from crossfuse.cli import flags_as_overrides, split_config_and_overrides
from engine.config import to_dict
from merging import estimate_fisher, greedy_soup, merge_checkpoints, save_fisher, save_merged
from merging.recipe import load_recipe
from merging.scoring import held_out_scorer, run_config, split_loader
from models import MultimodalModel


def fisher_files(models: list[str], cfg, tmp: Path) -> list[Path]:
    """Estimate each model's diagonal Fisher on its own data, one model in memory at a time."""
    paths = []
    for i, path in enumerate(models):
        run_cfg, ckpt = run_config(path)
        loader = split_loader(path, cfg.fisher.split, train=True, batch_size=run_cfg.train.batch_size)
        model = MultimodalModel.from_pretrained(ckpt.model_dir)
        fisher = estimate_fisher(model, loader, cfg.fisher.samples, cfg.fisher.labels, seed=run_cfg.run.seed)
        paths.append(save_fisher(fisher, tmp / f"fisher_{i}.safetensors"))
        del model, fisher
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="*", help="a merge recipe YAML, then dotted overrides (params.density=0.3)")
    args = parser.parse_args(flags_as_overrides(argv))
    path, overrides = split_config_and_overrides(args.recipe)
    cfg = load_recipe(path, overrides)
    recipe = to_dict(cfg)
    models = list(cfg.models)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    reference = cfg.base or models[0]
    summary: dict = {"method": cfg.method, "output": str(out)}
    if cfg.method == "greedy_soup":
        soup = greedy_soup(models, held_out_scorer(models[0], cfg.greedy.split, cfg.greedy.metric))
        recipe["result"] = {"chosen": soup.chosen, "scores": soup.scores, "history": soup.history,
                            f"soup_{cfg.greedy.split}_{cfg.greedy.metric}": soup.score}
        state, reference = soup.state, soup.chosen[0]
        summary.update(chosen=soup.chosen, score=soup.score)
        print(f"greedy soup of {len(soup.chosen)}/{len(models)} models, {cfg.greedy.split} {cfg.greedy.metric} "
              f"{soup.score:.4f}: {', '.join(soup.chosen)}")
    else:
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            fishers = fisher_files(models, cfg, Path(tmp)) if cfg.method == "fisher" else None
            state = merge_checkpoints(models, cfg.method, cfg.base, to_dict(cfg.params), to_dict(cfg.policies),
                                      fishers)
    save_merged(state, reference, out, recipe)
    print(f"merged {len(models)} models with {cfg.method} into {out} (evaluate: python evaluate.py {out})")
    return summary

