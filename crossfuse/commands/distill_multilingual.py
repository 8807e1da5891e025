"""Make a trained run multilingual: ``python distill_multilingual.py runs/en_model --out runs/en_model_ml``.

Multilingual knowledge distillation (Reimers & Gurevych 2020) through the training engine
(``train.task=multilingual_distill``): the run's text tower, frozen, is the teacher; the run's whole model, of which
only the text tower trains, is the student, trained on parallel sentences (default ``<data.root>/parallel.tsv``) so
that it embeds a sentence and its translation where the teacher embeds the sentence. The result is a run folder
like any other (``config.yaml``, ``model/``, ``checkpoints/``, ``log.jsonl``, ``metrics.json`` with every language
of the eval split), which ``evaluate.py`` reads and ``--resume latest`` continues; ``distill.json`` adds the
translation-retrieval accuracy of the teacher and of the student. Dotted overrides after the options change the
rest (``train.mixed_precision=bf16 run.tracker=wandb``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import transfer  # noqa: F401  (registers multilingual_distill)
from crossfuse.cli import flags_as_overrides
from data.parallel import read_parallel
from engine.builders import build_tokenizer
from engine.checkpoint import write_json_atomic
from engine.config import load_config
from engine.evaluation import format_table
from engine.trainer import Trainer
from models import MultimodalModel, resolve_model_dir
from transfer.multilingual import translation_retrieval


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by train.py (its text tower is the teacher)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for the distillation run")
    parser.add_argument("--out", required=True, help="the new run folder to write")
    parser.add_argument("--parallel", default=None, help="TSV/JSONL sentence pairs (default: <data.root>/parallel.tsv)")
    parser.add_argument("--languages", nargs="*", default=None, help="target languages to use (default: all)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder of the --out run")
    args = parser.parse_intermixed_args(flags_as_overrides(argv))
    run_dir, out = Path(args.run_dir), Path(args.out)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {run_dir / 'config.yaml'} does not exist")
    model_dir = resolve_model_dir(run_dir)
    params = {"teacher": str(run_dir), "parallel": args.parallel, "languages": args.languages}
    cfg = load_config(run_dir / "config.yaml", [
        f"run.output_dir={out.parent}", f"run.name={out.name}", f"run.seed={args.seed}",
        "train.task=multilingual_distill", f"train.task_params={json.dumps(params)}", "train.init_from=null",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", f"optim.lr={args.lr}",
        "optim.encoder_lr=null", "optim.schedule=constant", "optim.warmup_ratio=0.0", "optim.layer_decay=1.0",
        "train.linear_probe_steps=0", "train.weight_averaging.name=none", f"train.eval_every={args.steps}",
        f"model.text.tokenizer={model_dir / 'tokenizer'}", "data.eval_languages=null",
        *args.overrides])
    trainer = Trainer(cfg, resume=args.resume)
    doc = trainer.fit()
    if "results" not in doc:  # interrupted: --resume latest continues it
        return doc
    tokenizer = build_tokenizer(cfg, model_dir)
    pairs = read_parallel(args.parallel or Path(cfg.data.root) / "parallel.tsv", args.languages)
    length = cfg.data.max_text_length
    teacher = MultimodalModel.from_pretrained(run_dir).text.eval()
    student = MultimodalModel.from_pretrained(out).text.eval()
    report = {"teacher_run": str(run_dir), "pairs": len(pairs), "steps": doc["steps"],
              "retrieval_before": translation_retrieval(teacher, tokenizer, pairs, length),
              "retrieval_after": translation_retrieval(student, tokenizer, pairs, length)}
    if trainer.accelerator.is_main_process:
        write_json_atomic(out / "distill.json", report)
        print(format_table(doc["results"]))
        print(f"translation retrieval (mean over languages): {report['retrieval_before']['mean']:.3f} -> "
              f"{report['retrieval_after']['mean']:.3f}; wrote {out} (evaluate with: python evaluate.py {out})")
    return {**doc, **report}
