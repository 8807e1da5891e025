"""Checkpoints of the training state: atomic writes, last-N retention, ``--resume latest``."""

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


AVERAGE_FILE = "weight_average.safetensors"  # EMA/SWA state beside Accelerate's files


def save_checkpoint(acc, run_dir: Path, state: dict[str, Any], keep_last: int, averager=None) -> Path:
    """Write the full training state (weights, optimizer, scheduler, RNGs, sampler, loop position, EMA/SWA).

    Written under ``.tmp-step_N`` and renamed once complete, so a crash mid-save never leaves a folder that
    ``--resume latest`` would pick (it only considers ``step_*`` folders holding ``trainer_state.json``).
    """
    from safetensors.torch import save_file

    final = Path(run_dir) / "checkpoints" / f"step_{state['step']:08d}"
    tmp = final.with_name(f".tmp-{final.name}")
    acc.save_state(str(tmp))
    acc.wait_for_everyone()  # sharded states (ZeRO, FSDP) are written by every rank before the rename
    if acc.is_main_process:
        if averager is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in averager.state_dict().items()},
                      str(tmp / AVERAGE_FILE))
        write_json_atomic(tmp / STATE_FILE, state)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)  # only now does --resume latest see it
        prune_checkpoints(run_dir, keep_last)
    acc.wait_for_everyone()
    return final


def load_checkpoint(acc, path: Path, averager=None) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into the prepared objects; returns the loop position."""
    from safetensors.torch import load_file

    acc.load_state(str(path))
    if averager is not None:
        average = Path(path) / AVERAGE_FILE
        if not average.is_file():
            raise FileNotFoundError(f"{average} is missing: the checkpoint was written without "
                                    "train.weight_averaging, so the average cannot continue from it")
        averager.load_state_dict(load_file(str(average)))
    return json.loads((Path(path) / STATE_FILE).read_text())
