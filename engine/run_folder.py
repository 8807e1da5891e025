"""A run folder and what the run writes into it.

``runs/<name>/`` holds ``config.yaml`` (the resolved config), ``model/`` (the best model, ``save_pretrained``
format), ``checkpoints/`` (training state for ``--resume``), ``log.jsonl`` (one row per log step and evaluation),
``metrics.json`` (final results), and when they apply ``data_skipped.json`` (rows dropped with
``data.on_error=skip``), ``init_report.json`` (what ``train.init_from`` loaded), ``model_ema/`` or ``model_swa/``.
Only the main process writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .checkpoint import write_json_atomic
from .config import save_config


class RunExistsError(FileExistsError):
    """The run folder already holds a trained model and neither --resume nor run.overwrite was given."""


class RunFolder:
    """The folder of one run. ``is_main``: whether this process writes (the others only read)."""

    def __init__(self, path: str | Path, is_main: bool = True):
        self.path, self.is_main = Path(path), is_main

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    def check_can_start(self, resume: str | None, overwrite: bool) -> None:
        """Refuse to train a fresh run into a folder that already holds a trained model."""
        if not resume and not overwrite and (self.path / "model").exists():
            raise RunExistsError(
                f"run folder {self.path} already holds a trained model; pick another run.name, resume it with "
                "--resume latest, or set run.overwrite=true to replace it")

    def start(self, cfg: DictConfig, fresh: bool) -> None:
        """Create the folder and write the resolved config; a fresh start (not a resume) restarts the log."""
        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.path / "config.yaml")
        if fresh:
            self.log_path.unlink(missing_ok=True)

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.is_main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        if self.is_main:
            write_json_atomic(path, data)
        return path

    def report_skips(self, rows: list[dict]) -> dict[str, int]:
        """Write ``data_skipped.json`` for rows dropped while reading or loading (each ``(file, line, reason)``
        once: a bad row fails again in every epoch); returns the count per reason."""
        unique = list({(r["file"], r["line"], r["reason"]): r for r in rows}.values())
        counts: dict[str, int] = {}
        for row in unique:
            counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        if unique:
            self.write_json("data_skipped.json", {"counts": counts, "rows": unique})
        return counts
