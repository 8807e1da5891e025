"""Model merging: weight-space merge methods (registered, one per file), greedy soups, Fisher estimation,
and merging by multi-teacher distillation (EMA/SWA during training is the engine's: ``engine/averaging.py``).

Python API::

    from merging import merge_checkpoints, save_merged
    state = merge_checkpoints(["runs/a", "runs/b"], "ties", base="runs/base", params={"density": 0.2})
    save_merged(state, "runs/base", "runs/merged_ties", recipe={...})
"""

from . import distill, methods  # noqa: F401  (registers the merge methods and the multi_teacher_distill task)
from .checkpoints import POLICIES, Checkpoint, MergeMismatchError, merge_checkpoints, save_merged
from .fisher_estimation import estimate_fisher, save_fisher
from .greedy_soup import SoupResult, greedy_soup
from .registry import get_merge_method, list_merge_methods, register_merge_method

__all__ = [
    "POLICIES", "Checkpoint", "MergeMismatchError", "SoupResult", "estimate_fisher",
    "get_merge_method", "greedy_soup", "list_merge_methods", "merge_checkpoints", "register_merge_method",
    "save_fisher", "save_merged",
]
