"""Importing this module registers the training tasks of the merging package (``multi_teacher_distill``,
``adamerging``), as ``train.py`` and ``evaluate.py`` do, so a run trained with one of them trains and evaluates."""

from . import adamerging, distill  # noqa: F401  (registration)
