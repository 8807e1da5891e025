"""Fusion methods for text + image features, one per module, registered by name.

``import fusion`` registers every method; build one with :func:`create_fusion` and list them with
:func:`list_fusions`. The contract every method honours is in :mod:`fusion.base`.
"""

from . import (  # noqa: F401  (imported for their @register_fusion side effect)
    bottleneck,
    co_attention,
    concat,
    cross_attention,
    film,
    gated,
    late,
    lmf,
    mfb,
    mult,
    mutan,
    perceiver,
    product,
    single_stream,
    sum,
    tfn,
    token_concat,
    unimodal,
)
from .base import FusionModule, ModalityFeatures
from .registry import create_fusion, fusion_params, list_fusions, register_fusion

__all__ = ["FusionModule", "ModalityFeatures", "create_fusion", "fusion_params", "list_fusions", "register_fusion"]
