"""Experiment trackers through Accelerate (W&B online/offline/disabled, TensorBoard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

WANDB_ID_FILE = "wandb_id.txt"


def tracker_init_kwargs(cfg: DictConfig, run_dir: Path, is_main: bool) -> dict[str, Any]:
    """Per-tracker ``init_kwargs``; the W&B run id is kept in the run folder so a resumed run continues it."""
    if cfg.run.tracker != "wandb":
        return {}
    id_file = Path(run_dir) / WANDB_ID_FILE
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        import wandb

        run_id = wandb.util.generate_id()
        if is_main:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id)
    return {"wandb": {"name": cfg.run.name, "group": cfg.run.group, "dir": str(run_dir), "id": run_id,
                      "resume": "allow"}}
