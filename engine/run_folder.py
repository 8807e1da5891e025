"""A run folder: one owner at a time, never mixed with another run, and what the run writes into it.

``runs/<name>/`` holds ``config.yaml`` (the resolved config), ``model/`` (the best model, ``save_pretrained``
format), ``checkpoints/`` (training state for ``--resume``), ``log.jsonl`` (one row per log step and evaluation),
``metrics.json`` (final results), and when they apply ``data_skipped.json`` (rows dropped with
``data.on_error=skip``), ``init_report.json`` (what ``train.init_from`` loaded), ``model_ema/`` or ``model_swa/``,
``preempted.json`` (written after a clean pre-emption save, removed when the run continues; the SLURM script
requeues only when it is there) and ``.lock`` (the owner: host and pid).

The rules: a fresh start refuses a folder that holds any run (``--resume latest`` continues it,
``run.overwrite=true`` moves it aside first, so nothing of it can be resumed, pruned against or reported); a
folder has one owner, the main process of the run holding ``.lock``; only the main process writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .checkpoint import truncate_log, write_json_atomic
from .config import save_config

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
PREEMPTED_FILE = "preempted.json"
RUN_FILES = ("config.yaml", "model", "checkpoints", "metrics.json", "log.jsonl")  # any of them: a run lives here
TRAINING_FILES = ("checkpoints", "log.jsonl")  # what only training writes (exports and merges hold none of them)


class RunExistsError(FileExistsError):
    """The folder already holds a run and neither --resume nor an overwrite was asked for."""


class RunLockedError(FileExistsError):
    """Another process owns the run folder."""


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/.lock``, holding the owner's host, pid and start time.

    The operating system releases the lock when its process ends, however it ends (kill -9 included), so a lock
    left by a dead process is never an obstacle; a live owner (another training, orphaned ranks still running)
    makes :meth:`acquire` fail naming it. On network filesystems ``flock`` may be local to each host.
    """

    def __init__(self, folder: str | Path, purpose: str = "training"):
        self.path, self.purpose, self._fd = Path(folder) / LOCK_FILE, purpose, None

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            raise RunLockedError(
                f"{self.path.parent} is in use by {holder.get('purpose', 'another process')} (pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('started', '?')}); wait "
                "for it to finish or stop it (orphaned training processes keep the lock until they exit)") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "purpose": self.purpose,
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holds_a_run(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


def move_aside(folder: str | Path) -> Path:
    """Rename an old run out of the way (``<name>.replaced-<time>``), under its lock; returns where it went."""
    folder = Path(folder)
    with FolderLock(folder, "run.overwrite"):
        target = folder.with_name(f"{folder.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while target.exists():
            target, n = folder.with_name(f"{folder.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{n}"), n + 1
        folder.rename(target)
    return target


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def check_new_folder(final: str | Path, overwrite: bool = False, protect: Iterable[str | Path] = (),
                     what: str = "output") -> Path:
    """Raise ``FileExistsError`` if :func:`new_folder` would refuse ``final`` (call it before long work, so a
    mistake fails at once); returns ``final`` as an absolute path."""
    final = Path(final).absolute()
    for source in protect:
        source = Path(source).absolute()
        if any(_inside(f, s) or _inside(s, f) for f in (final, final.resolve()) for s in (source, source.resolve())):
            raise FileExistsError(f"{what} {final} would write into or over the input {source}; choose another "
                                  "output folder")
    if final.exists():
        trained = [n for n in TRAINING_FILES if (final / n).exists()]
        if trained:
            raise FileExistsError(f"{final} holds a training run ({', '.join(trained)}); write the {what} to another "
                                  "folder")
        if not overwrite and any(final.iterdir()):
            raise FileExistsError(f"{final} already exists; choose another folder, or pass --overwrite to replace it")
    return final


@contextlib.contextmanager
def new_folder(final: str | Path, overwrite: bool = False, protect: Iterable[str | Path] = (),
               what: str = "output") -> Iterator[Path]:
    """Write a folder completely, then put it in place: yields an empty temporary sibling to fill; on success it
    becomes ``final``, on any error nothing is left behind.

    ``final`` must not exist (or, with ``overwrite``, is replaced by one rename only once the new folder is
    complete), must not hold a run (a training folder is never written into), must not be locked by a training,
    and must be neither inside nor around any of ``protect`` (the inputs: an output never replaces what it was
    made from; symbolic links are followed).
    """
    final = check_new_folder(final, overwrite, protect, what)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            with FolderLock(final, f"replacing it with a new {what}"):
                old = final.with_name(f".old-{final.name}-{os.getpid()}")
                final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RunFolder:
    """The folder of one run. ``is_main``: whether this process writes (the others only read)."""

    def __init__(self, path: str | Path, is_main: bool = True):
        self.path, self.is_main = Path(path), is_main
        self.lock: FolderLock | None = None

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    def check_can_start(self, resume: str | None, overwrite: bool) -> None:
        """Refuse a fresh start in a folder that holds a run (read-only: every process may check)."""
        if not resume and not overwrite and holds_a_run(self.path):
            what = "a trained model" if (self.path / "model").exists() else "a run (config, log or checkpoints)"
            raise RunExistsError(
                f"run folder {self.path} already holds {what}; continue it with --resume latest, pick another "
                "run.name, or set run.overwrite=true to move it aside and start again")

    def claim(self, resume: str | None, overwrite: bool) -> None:
        """Main process, before anything is written: move an overwritten run aside, then lock the folder."""
        if not self.is_main:
            return
        if overwrite and not resume and holds_a_run(self.path):
            logger.warning("run.overwrite=true: the old run in %s was moved to %s", self.path, move_aside(self.path))
        self.lock = FolderLock(self.path).acquire()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def start(self, cfg: DictConfig, resumed_at: int | None) -> None:
        """Write the resolved config; a fresh start restarts the log, a resume at step N drops the rows logged
        after N (the resumed run writes them again)."""
        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.path / "config.yaml")
        if resumed_at is None:
            self.log_path.unlink(missing_ok=True)
        else:
            truncate_log(self.log_path, resumed_at)
        (self.path / PREEMPTED_FILE).unlink(missing_ok=True)  # the run continues: it is no longer a pre-empted one

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
