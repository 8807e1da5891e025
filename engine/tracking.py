"""Experiment trackers through Accelerate: W&B (``run.wandb_mode`` online, offline, disabled) and TensorBoard.

What the loop logs (``Trainer.log``): ``train/loss`` and the task's other scalars, ``train/samples_per_s``,
``train/data_wait_frac`` (share of the step spent waiting for the data loader), ``lr/<param group>``,
``gpu/max_memory_gb`` on GPUs, ``val/*`` at each evaluation and the final ``val/*``/``test/*`` metrics.
The resolved config is sent once at ``init_trackers``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .config import to_dict

WANDB_ID_FILE = "wandb_id.txt"


def tracker_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as the tracker takes it: nested for W&B, flat ``a.b.c`` scalars for TensorBoard
    (whose hparams accept only int, float, str, bool)."""
    config = to_dict(cfg)
    if cfg.run.tracker != "tensorboard":
        return config

    def flat(node: Any, prefix: str) -> dict[str, Any]:
        if isinstance(node, dict) and node:
            return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        value = node if isinstance(node, (int, float, str, bool)) else str(node)
        return {prefix[:-1]: value}

    return flat(config, "")


def tracker_init_kwargs(cfg: DictConfig, run_dir: Path, is_main: bool) -> dict[str, Any]:
    """Per-tracker ``init_kwargs`` for ``Accelerator.init_trackers``.

    The W&B run id is stored in ``<run>/wandb_id.txt`` the first time, and read back by ``--resume``, so a
    resumed (or requeued) run continues the same W&B run instead of starting a new one, while a fresh start (a new
    folder: ``run.overwrite`` moves the old one aside, id file included) gets a new id. A sweep trial takes the id
    the agent gave it. W&B writes under
    ``<run>/wandb/``; offline runs are uploaded later with ``wandb sync <run>/wandb/offline-run-*``.
    """
    if cfg.run.tracker != "wandb":
        return {}
    id_file = Path(run_dir) / WANDB_ID_FILE
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    elif os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
        run_id = os.environ["WANDB_RUN_ID"]  # a sweep trial: the agent's run, so W&B files it under the sweep
    else:
        run_id = uuid.uuid4().hex[:8]  # W&B's own format: 8 lowercase alphanumerics
    if is_main and not id_file.is_file():
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
    kwargs = {"name": cfg.run.name, "group": cfg.run.group, "dir": str(run_dir), "id": run_id, "resume": "allow"}
    if cfg.run.wandb_mode is not None:  # explicit, so it wins over a WANDB_MODE left in the environment
        kwargs["mode"] = cfg.run.wandb_mode
    return {"wandb": kwargs}
