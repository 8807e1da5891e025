"""Weight-space merge methods, one per file; importing this package registers them all (torch only: what a
method needs from data is collected by the merge command before it runs)."""

from . import (  # noqa: F401  (registration)
    adamerging,
    breadcrumbs,
    dare,
    della,
    fisher,
    linear,
    model_stock,
    regmean,
    slerp,
    task_arithmetic,
    ties,
)
