"""Name -> export kind registry: ``@register_export("int8")`` and :func:`get_export`.

An export kind is a class with two static methods: ``export(model, out_dir, source, **options) -> details`` writes
the kind's weight files into ``out_dir`` and returns what ``export.json`` should record about it (layers quantized,
sparsity per layer, opset, ...); ``load(directory, manifest) -> nn.Module`` rebuilds a model from those files. The
keyword arguments of ``export`` are the kind's options.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from crossfuse.registry import Registry


class ExportKind(Protocol):
    kind: str

    @staticmethod
    def export(model: nn.Module, out_dir: Any, **options: Any) -> dict[str, Any]: ...

    @staticmethod
    def load(directory: Any, manifest: dict[str, Any]) -> nn.Module: ...


EXPORTS: Registry[type] = Registry("export kind", signature=lambda cls: cls.export,
                                   supplied=("model", "out_dir", "source"))


def register_export(name: str, renamed_from: tuple[str, ...] = ()):
    """Class decorator registering an export kind under ``name`` (the ``kind`` written to ``export.json``)."""

    def wrap(cls: type) -> type:
        cls.kind = name
        return EXPORTS.add(name, cls, renamed_from)

    return wrap


def list_exports(pattern: str = "*") -> list[str]:
    return EXPORTS.names(pattern)


def get_export(name: str) -> type[ExportKind]:
    return EXPORTS.get(name)
