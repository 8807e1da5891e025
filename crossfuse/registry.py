"""One registry for every kind of component: fusion methods, datasets, tasks, merge methods, export kinds.

A :class:`Registry` maps names to builders (a class or a function). The builder's keyword arguments are the
component's config schema (timm's ``@register_model`` functions, mergekit's typed merge functions): options a user
writes in a config are checked against that signature before anything is built, and every error names the nearest
valid name. A renamed component keeps its old name as an alias that still resolves, with a ``DeprecationWarning``,
so a saved model or config that names it keeps loading.

This module imports only the standard library: every floor of the project may use it.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no component of the registry answers to; the message lists the nearest and the valid names."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def nearest(name: str, valid: list[str] | Mapping[str, Any]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``valid``, or an empty string."""
    near = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean {near[0]!r}?" if near else ""


class Registry(Generic[T]):
    """Name -> builder, for one kind of component.

    Args:
        kind: what the components are, for messages ("fusion method", "dataset", ...).
        signature: the callable whose parameters are a builder's options (default: the builder itself; a class's
            ``__init__`` is what ``inspect.signature`` reads for a class).
        supplied: parameters the framework passes itself (``root``, ``split``, ``text_dim``, ...): not options.
        hint: appended to the unknown-name error (e.g. which import registers more components).
    """

    def __init__(self, kind: str, signature: Callable[[T], Callable] | None = None, supplied: tuple[str, ...] = (),
                 hint: str = ""):
        self.kind, self.hint = kind, hint
        self._signature = signature or (lambda builder: builder)
        self.supplied = frozenset(supplied) | {"self"}
        self._items: dict[str, T] = {}
        self._renamed: dict[str, str] = {}  # old name -> current name

    # ------------------------------------------------------------------ registration
    def add(self, name: str, builder: T, renamed_from: tuple[str, ...] = ()) -> T:
        """Register ``builder`` under ``name``; ``renamed_from``: earlier names that keep resolving to it."""
        if name in self._items or name in self._renamed:
            old = self._items.get(name, self._renamed.get(name))
            raise ValueError(f"{self.kind} {name!r} is registered twice ({_describe(old)}, {_describe(builder)})")
        self._items[name] = builder
        for old in renamed_from:
            self.rename(old, name)
        return builder

    def register(self, name: str, renamed_from: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@FUSIONS.register("gated")``."""

        def wrap(builder: T) -> T:
            return self.add(name, builder, renamed_from)

        return wrap

    def rename(self, old: str, new: str) -> None:
        """Keep ``old`` working as a deprecated alias of the registered ``new``."""
        if new not in self._items:
            raise UnknownNameError(f"cannot alias {old!r} to {new!r}: no {self.kind} {new!r} is registered")
        if old in self._items or old in self._renamed:
            raise ValueError(f"{self.kind} {old!r} is registered twice (as a name and as an alias of {new!r})")
        self._renamed[old] = new

    # ------------------------------------------------------------------ lookup
    def resolve(self, name: str) -> str:
        """The current name for ``name`` (an alias warns once per call site); unknown names raise."""
        if name in self._items:
            return name
        if name in self._renamed:
            new = self._renamed[name]
            warnings.warn(f"{self.kind} {name!r} was renamed to {new!r}; the old name will stop working in a later "
                          f"release: write {new!r} in configs", DeprecationWarning, stacklevel=3)
            return new
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{nearest(name, self.names())} "
                               f"Registered: {', '.join(self.names())}{self.hint}")

    def get(self, name: str) -> T:
        return self._items[self.resolve(name)]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (aliases excluded), sorted, filtered by an ``fnmatch`` pattern (``"cross_*"``)."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._renamed

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    # ------------------------------------------------------------------ options
    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The builder's own keyword arguments (its config schema), without those the framework supplies."""
        params = inspect.signature(self._signature(self.get(name))).parameters
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {k: p for k, p in params.items() if k not in self.supplied and p.kind in named}

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` for an option the builder does not take (naming the nearest) or a required one
        that is missing."""
        valid = self.options(name)
        for key in options:
            if key not in valid:
                raise TypeError(f"{self.kind} {self.resolve(name)!r} has no option {key!r}.{nearest(key, valid)} "
                                f"Valid options: {', '.join(valid) or '(none)'}")
        missing = [k for k, p in valid.items() if p.default is inspect.Parameter.empty and k not in options]
        if missing:
            raise TypeError(f"{self.kind} {self.resolve(name)!r} needs the option(s) {', '.join(missing)}")

    def build(self, name: str, *supplied: Any, **options: Any) -> Any:
        """Check ``options`` against the builder's signature, then call it with the framework's arguments first."""
        self.check_options(name, options)
        return self.get(name)(*supplied, **options)


def _describe(builder: Any) -> str:
    return getattr(builder, "__qualname__", type(builder).__name__)
