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

import numpy as np
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


def log_predictions(accelerator, cfg: DictConfig, split: str, pred: dict, names: list[str], rows: list[dict],
                    step: int, multi_label: bool, threshold: Any = 0.5) -> None:
    """At the end of a run: a confusion matrix and a table of sample predictions on ``split``, in the tracker's
    own formats (W&B: ``wandb.plot.confusion_matrix`` and a ``wandb.Table``; TensorBoard: a figure and a text
    table). ``pred``: :func:`engine.evaluation.predict`'s output; ``rows``: the dataset records by index."""
    if cfg.run.tracker == "none" or not accelerator.is_main_process or not len(pred["labels"]):
        return
    scores, labels, index = pred["scores"], pred["labels"], pred["index"]
    order = sorted(range(len(index)), key=lambda i: index[i])[:SAMPLE_ROWS]
    predicted = scores.argmax(1) if not multi_label else None
    cut = np.broadcast_to(np.asarray(threshold, dtype=float), (len(names),))  # multi-label: the tuned thresholds

    def label_text(i: int) -> str:
        if multi_label:
            return "|".join(n for n, q, t in zip(names, scores[i], cut) if q >= t)
        return names[int(predicted[i])]

    table = [[rows[int(index[i])].get("id"), (rows[int(index[i])].get("text") or "")[:120],
              Path(str(rows[int(index[i])].get("image") or "")).name, _truth(labels[i], names, multi_label),
              label_text(i), float(scores[i].max())] for i in order]
    columns = ["id", "text", "image", "label", "predicted", "probability"]
    if cfg.run.tracker == "wandb":
        import wandb

        run = accelerator.get_tracker("wandb", unwrap=True)
        logged = {f"{split}/predictions": wandb.Table(columns=columns, data=table)}
        if not multi_label:
            logged[f"{split}/confusion_matrix"] = wandb.plot.confusion_matrix(
                y_true=labels.tolist(), preds=predicted.tolist(), class_names=names)
        run.log(logged, step=step)
    elif cfg.run.tracker == "tensorboard":
        from .plots import confusion_matrix_figure

        writer = accelerator.get_tracker("tensorboard", unwrap=True)
        if not multi_label:
            writer.add_figure(f"{split}/confusion_matrix", confusion_matrix_figure(labels, predicted, names), step)
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in table]
        writer.add_text(f"{split}/predictions", "\n".join(lines), step)
        writer.flush()


SAMPLE_ROWS = 20  # rows of the sample-predictions table


def _truth(label, names: list[str], multi_label: bool) -> str:
    if multi_label:
        return "|".join(n for n, v in zip(names, label) if v > 0.5)
    return names[int(label)] if int(label) >= 0 else ""
