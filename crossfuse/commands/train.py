"""Train a model: ``python train.py configs/experiments/quickstart.yaml [key=value ...] [--resume latest]``.

Also runs under ``accelerate launch train.py ...`` for multi-process / multi-GPU / DeepSpeed / FSDP training.
"""

from __future__ import annotations

import argparse

import merging  # noqa: F401  (registers multi_teacher_distill)
import transfer  # noqa: F401  (registers contrastive, distill, crossmodal_distill)
from crossfuse.cli import split_config_and_overrides
from engine.config import load_config
from engine.evaluation import format_table
from engine.trainer import Trainer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="*", help="an experiment YAML, then dotted overrides (train.max_steps=100)")
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder of this run")
    args = parser.parse_args(argv)
    experiment, overrides = split_config_and_overrides(args.config)
    cfg = load_config(experiment, overrides)
    trainer = Trainer(cfg, resume=args.resume)
    doc = trainer.fit()
    if trainer.accelerator.is_main_process and "results" in doc:
        print(format_table(doc["results"]))
        if "weight_averaging" in doc:
            wa = doc["weight_averaging"]
            print(f"{wa['name']} model ({wa['updates']} updates):\n{format_table(wa['results'])}")
    return doc

