"""Model merging: weight-space merge methods (registered, one per file), greedy soups, Fisher estimation,
data-driven merges (RegMean, AdaMerging) and merging by multi-teacher distillation (EMA/SWA during training is the
engine's: ``engine/averaging.py``).

Python API::

    from merging import merge_checkpoints, save_merged
    state = merge_checkpoints(["runs/a", "runs/b"], "ties", base="runs/base", params={"density": 0.2})
    save_merged(state, "runs/base", "runs/merged_ties", recipe={...})

Importing the package registers the merge methods and loads torch and safetensors only; what reads data or builds
models (greedy soup, Fisher estimation, the tasks) is imported when first used. ``import merging.tasks`` registers
the package's training tasks (``multi_teacher_distill``, ``adamerging``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import methods  # noqa: F401  (registers the merge methods)
from .checkpoints import POLICIES, Checkpoint, MergeMismatchError, merge_checkpoints, save_merged
from .registry import get_merge_method, list_merge_methods, register_merge_method

if TYPE_CHECKING:
    from .fisher_estimation import estimate_fisher, save_fisher
    from .soup import SoupResult, greedy_soup

_LAZY = {"estimate_fisher": "fisher_estimation", "save_fisher": "fisher_estimation", "SoupResult": "soup",
         "greedy_soup": "soup"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "POLICIES", "Checkpoint", "MergeMismatchError", "SoupResult", "estimate_fisher",
    "get_merge_method", "greedy_soup", "list_merge_methods", "merge_checkpoints", "register_merge_method",
    "save_fisher", "save_merged",
]
