"""Run folders and checkpoints: atomic writes, last-N retention, ``--resume latest``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

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
    found = list_checkpoints(run_dir)
    for old in found[: max(0, len(found) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
