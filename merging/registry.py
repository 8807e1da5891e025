"""Name -> merge method registry: ``@register_merge_method("ties", needs_base=True)`` on a plain tensor function.

A merge method is a function of one tensor per model (all the same shape), an optional ``base`` tensor and keyword
arguments; its keyword arguments ARE its config schema (mergekit's ``easy_define`` idea), checked by
:func:`check_params` before any tensor is read.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from crossfuse.registry import Registry

# Inputs the merge engine supplies itself; everything else in the signature is user config.
ENGINE_ARGS = ("tensors", "base", "fishers", "grams", "key")


@dataclass(frozen=True)
class MergeMethod:
    name: str
    fn: Callable[..., Tensor]
    needs_base: bool = False  # task-vector methods work on differences from a shared starting point
    needs_fisher: bool = False  # per-tensor diagonal Fisher of every model (merging/fisher.py)
    num_models: int | None = None  # None = any number
    needs_grams: bool = False  # input Gram matrix of every linear layer of every model (merging/activations.py)

    @property
    def params(self) -> dict[str, inspect.Parameter]:
        return METHODS.options(self.name)

    @property
    def takes_key(self) -> bool:
        return "key" in inspect.signature(self.fn).parameters


METHODS: Registry[MergeMethod] = Registry(
    "merge method", signature=lambda method: method.fn, supplied=ENGINE_ARGS,
    hint=" (and greedy_soup, which merge.py runs on held-out data)")


def register_merge_method(name: str, needs_base: bool = False, needs_fisher: bool = False,
                          num_models: int | None = None, renamed_from: tuple[str, ...] = (), needs_grams: bool = False):
    """Function decorator registering a tensor merge function under ``name``."""

    def wrap(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        METHODS.add(name, MergeMethod(name, fn, needs_base, needs_fisher, num_models, needs_grams), renamed_from)
        fn.merge_method = name
        return fn

    return wrap


def list_merge_methods(pattern: str = "*") -> list[str]:
    return METHODS.names(pattern)


def get_merge_method(name: str) -> MergeMethod:
    return METHODS.get(name)


def check_params(method: MergeMethod, params: dict) -> None:
    """Unknown keyword arguments are an error naming the nearest valid one."""
    METHODS.check_options(method.name, params)


def normalised_weights(weights: list[float] | None, n: int) -> list[float]:
    """``weights`` (default uniform) scaled to sum to 1; a length mismatch is a user error."""
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"weights has {len(weights)} entries for {n} models; give one weight per model")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"weights must sum to a positive number, got {list(weights)}")
    return [float(w) / total for w in weights]
