"""Name -> dataset builder registry: ``@register_dataset("jsonl")`` and ``create_dataset("jsonl", root, split)``.

A builder is a plain function ``build(root: str, split: str, **params) -> MultimodalDataset`` whose keyword
arguments (all with defaults) are its config schema, as in timm's ``@register_model`` functions.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

_DATASETS: dict[str, Callable[..., Any]] = {}
_COMMON = ("root", "split")


def _hint(name: str, valid) -> str:
    near = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean {near[0]!r}?" if near else ""


def register_dataset(name: str):
    """Function decorator registering a dataset builder under ``name``."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _DATASETS:
            old = _DATASETS[name].__qualname__
            raise ValueError(f"dataset {name!r} is registered twice ({old}, {fn.__qualname__})")
        params = list(inspect.signature(fn).parameters.values())
        if [p.name for p in params[:2]] != list(_COMMON):
            raise TypeError(f"dataset builder {fn.__qualname__} must take (root, split, **params)")
        for p in params[2:]:
            if p.default is inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"dataset builder {fn.__qualname__}: option {p.name!r} needs a default value")
        fn.dataset_name = name
        _DATASETS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def get_dataset_builder(name: str) -> Callable[..., Any]:
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}.{_hint(name, _DATASETS)} Registered: {', '.join(list_datasets())}")
    return _DATASETS[name]


def dataset_params(name: str) -> dict[str, Any]:
    """The builder's options and their defaults (the dataset's config schema), ``root`` and ``split`` excluded."""
    sig = inspect.signature(get_dataset_builder(name))
    return {k: p.default for k, p in sig.parameters.items() if k not in _COMMON}


def create_dataset(name: str, root: str, split: str, **params):
    """Build a registered dataset. Options left as ``None`` keep the builder's default; unknown ones are an error."""
    valid = dataset_params(name)
    for key in params:
        if key not in valid:
            raise TypeError(
                f"dataset {name!r} has no option {key!r}.{_hint(key, valid)} Valid options: {', '.join(valid)}"
            )
    params = {k: v for k, v in params.items() if v is not None}
    return get_dataset_builder(name)(str(root), split, **params)
