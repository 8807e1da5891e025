"""Shared command-line helpers for the entry scripts."""

from __future__ import annotations

import os
import sys


def split_config_and_overrides(positional: list[str]) -> tuple[str | None, list[str]]:
    """``[EXP.yaml] [a.b=c ...]`` -> (experiment path or None, overrides)."""
    if positional and "=" not in positional[0]:
        return positional[0], positional[1:]
    return None, positional


def exit_cleanly(code: int = 0) -> None:
    """End a launched process without waiting on gloo's teardown, which sometimes aborts at interpreter exit."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def multi_process_cpu() -> bool:
    """True in a process launched as one of several (``WORLD_SIZE`` > 1) on a machine without a GPU.

    Accelerate picks DDP over gloo (MULTI_CPU) only when told ``cpu=True``; otherwise each launched process
    silently trains alone. Pass this as ``Accelerator(cpu=...)``.
    """
    import torch

    has_device = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_device
