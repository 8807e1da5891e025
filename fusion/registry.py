"""Name -> fusion class registry: ``@register_fusion("gated")`` and ``create_fusion("gated", ...)``."""

from __future__ import annotations

import difflib
import inspect

from .base import FusionModule

_FUSIONS: dict[str, type[FusionModule]] = {}


def register_fusion(name: str):
    """Class decorator registering a :class:`FusionModule` subclass under ``name``."""

    def wrap(cls: type[FusionModule]) -> type[FusionModule]:
        if name in _FUSIONS:
            raise ValueError(f"fusion method {name!r} is registered twice ({_FUSIONS[name].__name__}, {cls.__name__})")
        if not issubclass(cls, FusionModule):
            raise TypeError(f"{cls.__name__} must subclass fusion.base.FusionModule")
        cls.fusion_name = name
        _FUSIONS[name] = cls
        return cls

    return wrap


def list_fusions() -> list[str]:
    return sorted(_FUSIONS)


def get_fusion_class(name: str) -> type[FusionModule]:
    if name not in _FUSIONS:
        near = difflib.get_close_matches(name, _FUSIONS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise KeyError(f"unknown fusion method {name!r}.{hint} Registered: {', '.join(list_fusions())}")
    return _FUSIONS[name]


def fusion_params(name: str) -> dict[str, inspect.Parameter]:
    """The method-specific keyword arguments of a fusion method (its config schema), with defaults."""
    sig = inspect.signature(get_fusion_class(name).__init__)
    common = {"self", "text_dim", "image_dim", "num_outputs"}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: p for k, p in sig.parameters.items() if k not in common and p.kind in named}


def create_fusion(name: str, text_dim: int, image_dim: int, num_outputs: int, **kwargs) -> FusionModule:
    """Build a registered fusion method; unknown keyword arguments are an error naming the valid ones."""
    valid = fusion_params(name)
    for key in kwargs:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise TypeError(f"fusion {name!r} has no option {key!r}.{hint} Valid options: {', '.join(valid)}")
    return get_fusion_class(name)(text_dim, image_dim, num_outputs, **kwargs)
