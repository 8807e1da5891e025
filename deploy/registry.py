"""Name -> export kind registry: ``@register_export("int8")`` and :func:`get_export`.

An export kind is a class with two static methods: ``export(model, out_dir, **options) -> details`` writes the
kind's weight files into ``out_dir`` and returns what ``export.json`` should record about it (layers quantized,
sparsity per layer, opset, ...); ``load(directory, manifest) -> nn.Module`` rebuilds a model from those files.
"""

from __future__ import annotations

import difflib
from typing import Any, Protocol

from torch import nn


class ExportKind(Protocol):
    kind: str

    @staticmethod
    def export(model: nn.Module, out_dir: Any, **options: Any) -> dict[str, Any]: ...

    @staticmethod
    def load(directory: Any, manifest: dict[str, Any]) -> nn.Module: ...


_EXPORTS: dict[str, type] = {}


def register_export(name: str):
    """Class decorator registering an export kind under ``name`` (the ``kind`` written to ``export.json``)."""

    def wrap(cls: type) -> type:
        if name in _EXPORTS:
            raise ValueError(f"export kind {name!r} is registered twice")
        cls.kind = name
        _EXPORTS[name] = cls
        return cls

    return wrap


def list_exports() -> list[str]:
    return sorted(_EXPORTS)


def get_export(name: str) -> type[ExportKind]:
    if name not in _EXPORTS:
        near = difflib.get_close_matches(name, _EXPORTS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise KeyError(f"unknown export kind {name!r}.{hint} Registered: {', '.join(list_exports())}")
    return _EXPORTS[name]
