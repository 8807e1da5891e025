"""Name -> dataset builder registry: ``@register_dataset("jsonl")`` and ``create_dataset("jsonl", root, split)``.

A builder is a plain function ``build(root: str, split: str, **params) -> MultimodalDataset`` whose keyword
arguments (all with defaults) are its config schema, as in timm's ``@register_model`` functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from crossfuse.registry import Registry

_COMMON = ("root", "split")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset", supplied=_COMMON)


def register_dataset(name: str, renamed_from: tuple[str, ...] = ()):
    """Function decorator registering a dataset builder under ``name``."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters.values())
        if [p.name for p in params[:2]] != list(_COMMON):
            raise TypeError(f"dataset builder {fn.__qualname__} must take (root, split, **params)")
        for p in params[2:]:
            if p.default is inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"dataset builder {fn.__qualname__}: option {p.name!r} needs a default value")
        fn.dataset_name = name
        return DATASETS.add(name, fn, renamed_from)

    return wrap


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)


def get_dataset_builder(name: str) -> Callable[..., Any]:
    return DATASETS.get(name)


def dataset_params(name: str) -> dict[str, Any]:
    """The builder's options and their defaults (the dataset's config schema), ``root`` and ``split`` excluded."""
    return {k: p.default for k, p in DATASETS.options(name).items()}


def create_dataset(name: str, root: str, split: str, **params):
    """Build a registered dataset. Options left as ``None`` keep the builder's default; unknown ones are an error."""
    DATASETS.check_options(name, params)
    params = {k: v for k, v in params.items() if v is not None}
    return DATASETS.get(name)(str(root), split, **params)
