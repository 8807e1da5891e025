"""Run folders and checkpoints: atomic writes, last-N retention, ``--resume latest``, pre-emption signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "trainer_state.json"


def atomic_dir(final: Path, write) -> Path:
    """Write a directory under a temporary name, then rename: a crash never leaves a half-written ``final``."""
    final = Path(final)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    write(tmp)
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = Path(path).with_name(f".tmp-{Path(path).name}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (those holding a trainer state), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def resolve_resume(run_dir: Path, resume: str | None) -> Path | None:
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(run_dir)
        if not found:
            raise FileNotFoundError(f"--resume latest: no complete checkpoint under {run_dir}/checkpoints "
                                    "(set train.save_every > 0 to write them)")
        return found[-1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE} in it)")
    return path


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints; also clear temporaries left by a crashed save."""
    found = list_checkpoints(run_dir)
    for old in found[: max(0, len(found) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in (Path(run_dir) / "checkpoints").glob(".tmp-step_*"):
        shutil.rmtree(stale, ignore_errors=True)


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after ``step``: a resumed run rewrites them, and the log must not hold them twice."""
    path = Path(path)
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text("".join(row + "\n" for row in rows))
    os.replace(tmp, path)


class StopSignals:
    """Turns SIGTERM / SIGUSR1 (what SLURM and most schedulers send before pre-emption) into a flag.

    The loop polls ``requested`` at each step boundary, saves a checkpoint and returns, instead of dying mid-step.
    Handlers are installed on ``__enter__`` and the previous ones restored on ``__exit__``; outside the main
    thread (where Python cannot install handlers) it does nothing.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                if hasattr(signal, name):
                    num = getattr(signal, name)
                    self._previous[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for num, handler in self._previous.items():
            signal.signal(num, handler)
        self._previous.clear()


TASK_STATE = "task_state.safetensors"


def save_task_state(module: torch.nn.Module, directory: Path) -> None:
    """Write a task's extra trainable module next to the model, as ``task_state.safetensors``."""
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
              str(Path(directory) / TASK_STATE), metadata={"format": "pt"})


def load_task_state(module: torch.nn.Module, directory: Path) -> None:
    path = Path(directory) / TASK_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the model in {directory} was not saved by a task with its own "
                                "trainable module (e.g. train.task=contrastive)")
    module.load_state_dict(load_file(str(path)))
