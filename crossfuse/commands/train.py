"""Train a model: ``python train.py configs/experiments/quickstart.yaml [key=value ...] [--resume latest]``.

Also runs under ``accelerate launch train.py ...`` for multi-process / multi-GPU / DeepSpeed / FSDP training, and
as a W&B sweep trial (``--a.b=c`` overrides; each trial gets its own run folder, ``<run.name>-<W&B run id>``).
A run without ``run.name`` is named after the time it started (``run-20261202-120000``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import merging.tasks  # noqa: F401  (registers multi_teacher_distill)
import transfer  # noqa: F401  (registers contrastive, distill, crossmodal_distill)
from crossfuse.cli import flags_as_overrides, split_config_and_overrides
from engine.config import ConfigError, load_config
from engine.evaluation import format_table
from engine.trainer import Trainer
from models.folder import CONFIG
from models.hub import write_model_card


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="*", help="an experiment YAML, then dotted overrides (train.max_steps=100)")
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder of this run")
    args = parser.parse_args(flags_as_overrides(argv))
    experiment, overrides = split_config_and_overrides(args.config)
    cfg = load_config(experiment, overrides)
    name = run_name(cfg.run.name, args.resume, Path(cfg.run.output_dir))
    if name != cfg.run.name:
        cfg = load_config(experiment, [*overrides, f"run.name={name}"])
    trainer = Trainer(cfg, resume=args.resume)
    doc = trainer.fit()
    model_dir = trainer.run.path / "model"
    if trainer.accelerator.is_main_process and (model_dir / CONFIG).is_file():
        command = "python train.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        write_model_card(model_dir, metrics=doc, command=command, datasets=[cfg.data.name])
    if trainer.accelerator.is_main_process and "results" in doc:
        print(format_table(doc["results"]))
        if "weight_averaging" in doc:
            wa = doc["weight_averaging"]
            print(f"{wa['name']} model ({wa['updates']} updates):\n{format_table(wa['results'])}")
    return doc



def run_name(name: str | None, resume: str | None, output_dir: Path) -> str:
    """The run folder's name: a W&B sweep trial adds its run id (trials never share a folder), a run without a
    name gets the time it started."""
    sweep_trial = os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None
    if sweep_trial:
        return f"{name or 'run'}-{sweep_trial}"
    if name:
        return name
    if resume:
        raise ConfigError("--resume continues a named run: give run.name=<the run folder's name>")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each process would pick its own time
        raise ConfigError("set run.name when launching several processes (they must agree on the run folder)")
    stamp = f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    taken = {p.name for p in output_dir.glob(f"{stamp}*")}
    return next(n for n in (stamp, *(f"{stamp}-{i}" for i in range(1, 1000))) if n not in taken)
