"""Weight-space merge methods, one per file; importing this package registers them all."""

from . import dare, fisher, linear, slerp, task_arithmetic, ties  # noqa: F401
