"""The ``crossfuse`` command: ``crossfuse train EXP.yaml k=v``, ``crossfuse evaluate RUN``, merge, export, ...

Each subcommand is a module of :mod:`crossfuse.commands` with ``main(argv=None)``; the scripts at the root of a
checkout (``train.py``, ``evaluate.py``, ...) call the same functions, so ``python train.py ...``,
``accelerate launch train.py ...`` and ``crossfuse train ...`` are one program. :func:`run` is what both share: it
sets up logging, turns a user's mistake into one clear line on stderr (``--debug`` or ``CROSSFUSE_DEBUG=1`` shows
the traceback), and ends launched processes without waiting on gloo's teardown.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

COMMANDS = {
    "train": ("train", "train a model from an experiment YAML and dotted overrides"),
    "evaluate": ("evaluate", "evaluate a run folder (val and test splits, per language, ablations)"),
    "predict": ("predict", "predict with a run, model or export folder (JSON lines)"),
    "validate": ("validate", "check a dataset before training (exit 1 if rows would be rejected)"),
    "merge": ("merge", "merge trained models with a recipe YAML"),
    "export": ("export", "export a run for deployment (int8, pruned, ONNX)"),
    "distill-multilingual": ("distill_multilingual", "make a run's text tower multilingual on parallel text"),
    "push": ("push", "upload a run's model (and its card) to the HuggingFace Hub"),
}

DEBUG_ENV = "CROSSFUSE_DEBUG"
LIBRARY_PACKAGES = ("crossfuse", "fusion", "data", "models", "engine", "transfer", "merging", "deploy")


def split_config_and_overrides(positional: list[str]) -> tuple[str | None, list[str]]:
    """``[EXP.yaml] [a.b=c ...]`` -> (experiment path or None, overrides)."""
    if positional and "=" not in positional[0]:
        return positional[0], positional[1:]
    return None, positional


def flags_as_overrides(argv: list[str] | None) -> list[str] | None:
    """``--optim.lr=0.001`` (the form a W&B sweep agent passes its parameters in) -> ``optim.lr=0.001``.

    Only a flag whose key holds a dot is rewritten: the commands' own options have none.
    """
    if argv is None:
        return None
    return [a[2:] if a.startswith("--") and "=" in a and "." in a.partition("=")[0] else a for a in argv]


class _MainRankOnly(logging.Filter):
    """Drops records on every rank but the main one, unless logged with ``extra={"all_ranks": True}``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return int(os.environ.get("RANK", "0")) == 0 or getattr(record, "all_ranks", False)


def setup_logging(level: int = logging.INFO) -> None:
    """The application's logging: one stderr handler on the root logger, records from the main rank only; our
    packages log at ``level``, third-party libraries at WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_MainRankOnly())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for name in LIBRARY_PACKAGES:
        logging.getLogger(name).setLevel(level)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user asked for something wrong (a config, a path, a model, data): reported as one
    line. Anything else is a bug and keeps its traceback."""
    from data.records import DataError
    from engine.config import ConfigError
    from models.errors import CheckpointMismatchError, HubError, ModelNotAvailableError

    return (ConfigError, DataError, ModelNotAvailableError, CheckpointMismatchError, HubError, FileNotFoundError,
            FileExistsError, NotADirectoryError, FloatingPointError, ValueError, KeyError, TypeError)


def run(main: Callable[[list[str] | None], Any], argv: list[str] | None = None,
        exit_status: Callable[[Any], int] | None = None) -> None:
    """Run an entry point as a program: exit status 0 (or ``exit_status(result)``), 2 with a one-line message for
    a user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if "--debug" in argv:
        argv.remove("--debug")
        debug = True
    setup_logging()
    try:
        result = main(argv)
    except user_errors() as err:
        if debug:
            raise
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        sys.stderr.write(f"error: {message}\n(run with --debug or {DEBUG_ENV}=1 for the traceback)\n")
        _exit(2)
    _exit(exit_status(result) if exit_status is not None else 0)


def _exit(code: int) -> None:
    # A process launched as one of several ends without waiting on gloo's teardown, which sometimes aborts at
    # interpreter exit ("terminate called without an active exception").
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: crossfuse COMMAND [ARGS ...]   (crossfuse COMMAND --help for its arguments)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """The console entry point: ``crossfuse COMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from crossfuse.registry import nearest

        sys.exit(f"crossfuse: unknown command {name!r}.{nearest(name, COMMANDS)}\n\n{_usage()}")
    module = importlib.import_module(f"crossfuse.commands.{COMMANDS[name][0]}")  # only the command's imports
    sys.argv[0] = f"crossfuse {name}"  # argparse's prog in usage lines
    run(module.main, rest, getattr(module, "exit_status", None))


if __name__ == "__main__":
    main()
