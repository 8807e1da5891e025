"""Name -> fusion class registry: ``@register_fusion("gated")`` and ``create_fusion("gated", ...)``."""

from __future__ import annotations

import inspect

from crossfuse.registry import Registry

from .base import FusionModule

# text_dim, image_dim and num_outputs come from the towers and the task; everything else is the method's config.
FUSIONS: Registry[type[FusionModule]] = Registry(
    "fusion method", signature=lambda cls: cls.__init__, supplied=("text_dim", "image_dim", "num_outputs"))


def register_fusion(name: str, renamed_from: tuple[str, ...] = ()):
    """Class decorator registering a :class:`FusionModule` subclass under ``name`` (and its former names)."""

    def wrap(cls: type[FusionModule]) -> type[FusionModule]:
        if not (isinstance(cls, type) and issubclass(cls, FusionModule)):
            raise TypeError(f"{getattr(cls, '__name__', cls)} must subclass fusion.base.FusionModule")
        cls.fusion_name = name
        return FUSIONS.add(name, cls, renamed_from)

    return wrap


def list_fusions(pattern: str = "*") -> list[str]:
    return FUSIONS.names(pattern)


def get_fusion_class(name: str) -> type[FusionModule]:
    return FUSIONS.get(name)


def fusion_params(name: str) -> dict[str, inspect.Parameter]:
    """The method-specific keyword arguments of a fusion method (its config schema), with defaults."""
    return FUSIONS.options(name)


def create_fusion(name: str, text_dim: int, image_dim: int, num_outputs: int, **kwargs) -> FusionModule:
    """Build a registered fusion method; unknown keyword arguments are an error naming the valid ones."""
    return FUSIONS.build(name, text_dim, image_dim, num_outputs, **kwargs)
