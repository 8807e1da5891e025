"""Checkpoints of the training state: atomic writes, last-N retention, ``--resume latest``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed exactly (damaged, incomplete, of another run, or not to be trusted)."""


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
    if path.resolve().parent != (Path(run_dir) / "checkpoints").resolve():
        raise CheckpointError(f"--resume {resume} is not a checkpoint of this run ({run_dir}/checkpoints): a resume "
                              "continues its own run; to start from another run's weights use train.init_from")
    return path


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints; also clear temporaries left by a crashed save."""
    found = list_checkpoints(run_dir)
    for old in found[: max(0, len(found) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in (Path(run_dir) / "checkpoints").glob(".tmp-step_*"):
        shutil.rmtree(stale, ignore_errors=True)


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after ``step``: a resumed run rewrites them, and the log must not hold them twice.

    A last line cut short (the process was killed while writing it) is dropped; any other unreadable line is an
    error naming it."""
    path = Path(path)
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a partial final write
                continue
            raise CheckpointError(f"{path}:{number} is not a JSON row (the file was edited); fix or delete that "
                                  "line, then resume again") from None
        if row.get("step", 0) <= step:
            rows.append(line)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text("".join(row + "\n" for row in rows))
    os.replace(tmp, path)


def save_model_folder(acc, trainable, model, extras, tokenizer, directory: Path) -> None:
    """Write the (best) model as a model folder, atomically: the weights gathered from every process (ZeRO-3, FSDP
    shard them), the tokenizer, and the task's trainable extras as ``task_state.safetensors``."""
    from models.folder import save_task_state

    acc.wait_for_everyone()
    state = acc.get_state_dict(trainable)  # keys model.* and extras.*, gathered on the main process
    if acc.is_main_process:
        model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}

        def write(tmp: Path) -> None:
            model.save_pretrained(tmp, tokenizer, state_dict=model_state)
            if len(extras):
                save_task_state(extras, tmp)
        atomic_dir(directory, write)
    acc.wait_for_everyone()


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


def load_checkpoint(acc, path: Path, averager=None, trust: bool = False, allow_inexact: bool = False
                    ) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into the prepared objects; returns the loop position.

    Exact or refused: this process's random-number state must be there and readable (or, with ``allow_inexact``,
    a loud warning says the run will not repeat the uninterrupted one); a damaged file is an error naming the
    checkpoint. Nothing is unpickled: Accelerate reads its files with ``weights_only=True`` and EMA/SWA state is
    safetensors; DeepSpeed's own files are pickles, so a DeepSpeed checkpoint loads only with ``trust``.
    """
    import warnings

    from accelerate.utils import load as accelerate_load
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if acc.state.deepspeed_plugin is not None and not trust:
        raise CheckpointError(f"{path} is a DeepSpeed checkpoint: DeepSpeed stores its states as pickles, which can "
                              "run code when loaded. Resume it only if you wrote it yourself: set "
                              "train.trust_checkpoint=true")
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path / STATE_FILE} is not valid JSON ({err}): the checkpoint is damaged; resume "
                              "from an earlier one (--resume <run>/checkpoints/step_N)") from None
    rng = path / f"random_states_{acc.process_index}.pkl"
    try:
        accelerate_load(rng)
    except Exception as err:  # missing, truncated, or a pickle that is not plain RNG state
        message = (f"{rng} cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}): "
                   "without it the resumed run draws other random numbers than the uninterrupted one")
        if not allow_inexact:
            raise CheckpointError(message + "; resume from an earlier checkpoint, or accept an inexact resume "
                                  "with train.allow_inexact_resume=true") from None
        warnings.warn(message + " (train.allow_inexact_resume=true)", stacklevel=2)
    try:
        acc.load_state(str(path))
    except Exception as err:
        raise CheckpointError(f"{path}: the training state cannot be loaded ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); the checkpoint is damaged or was "
                              "written by another configuration: resume from an earlier one") from err
    if averager is not None:
        average = path / AVERAGE_FILE
        if not average.is_file():
            raise CheckpointError(f"{average} is missing: the checkpoint was written without "
                                  "train.weight_averaging, so the average cannot continue from it")
        try:
            averager.load_state_dict(load_file(str(average)))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{average} cannot be read ({err}): the checkpoint is damaged") from None
    return state
