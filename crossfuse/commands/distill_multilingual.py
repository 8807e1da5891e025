"""Make a trained run multilingual: ``python distill_multilingual.py runs/en_model --out runs/en_model_ml``.

Multilingual knowledge distillation (Reimers & Gurevych 2020): the run's own text tower is the frozen teacher, a
copy of it the student, trained on parallel sentences (default: ``<data.root>/parallel.tsv``) so that the student
embeds a sentence and its translation where the teacher embeds the sentence. The student then replaces the text
tower (``text.*``) of the run's model, and the result is written as a new run folder that ``evaluate.py`` reads:
``config.yaml``, ``model/`` and ``distill.json`` (translation-retrieval accuracy before and after).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from engine.builders import build_tokenizer
from engine.checkpoint import write_json_atomic
from engine.config import config_from_dict, load_config, save_config, to_dict
from models import MultimodalModel, resolve_model_dir
from transfer.multilingual import distill_multilingual, read_parallel, translation_retrieval


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by train.py (its text tower is the teacher)")
    parser.add_argument("--out", required=True, help="the new run folder to write")
    parser.add_argument("--parallel", default=None, help="TSV/JSONL sentence pairs (default: <data.root>/parallel.tsv)")
    parser.add_argument("--languages", nargs="*", default=None, help="target languages to use (default: all)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run_dir, out = Path(args.run_dir), Path(args.out)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {run_dir / 'config.yaml'} does not exist")
    if (out / "model").exists():
        raise FileExistsError(f"{out} already holds a model; choose another --out or delete it")
    cfg = load_config(run_dir / "config.yaml")
    model_dir = resolve_model_dir(run_dir)
    model = MultimodalModel.from_pretrained(model_dir)
    if model.text is None:
        raise ValueError(f"{run_dir}: fusion {cfg.model.fusion.name!r} has no text tower to distil")
    tokenizer = build_tokenizer(cfg, model_dir)
    pairs = read_parallel(args.parallel or Path(cfg.data.root) / "parallel.tsv", args.languages)
    torch.manual_seed(args.seed)
    teacher, student = model.text, copy.deepcopy(model.text).requires_grad_(True)
    length = cfg.data.max_text_length
    before = translation_retrieval(teacher, tokenizer, pairs, length)
    losses = distill_multilingual(teacher, student, tokenizer, pairs, args.steps, args.batch_size, args.lr, length,
                                  args.seed)
    after = translation_retrieval(student, tokenizer, pairs, length)
    model.text = student  # the fusion model now reads every language through the student
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model", tokenizer)
    data = to_dict(cfg)
    data["run"].update(name=out.name, output_dir=str(out.parent))
    save_config(config_from_dict(data), out / "config.yaml")
    report = {"teacher_run": str(run_dir), "pairs": len(pairs), "steps": args.steps, "final_mse": losses[-1],
              "retrieval_before": before, "retrieval_after": after}
    write_json_atomic(out / "distill.json", report)
    print(f"translation retrieval (mean over languages): {before['mean']:.3f} -> {after['mean']:.3f}; "
          f"wrote {out} (evaluate with: python evaluate.py {out})")
    return report

