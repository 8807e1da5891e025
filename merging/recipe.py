"""The merge recipe (``configs/merge/*.yaml``): a typed schema, loaded with dotted overrides like run configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from engine.config import choice, load_layers

FisherLabels = choice("FisherLabels", "sampled", "true")
# What a per-key policy does with the tensors whose names match its pattern.
Policy = choice("Policy", "merge", "keep_base", "skip", "shape_match")
Granularity = choice("Granularity", "task", "layer")  # AdaMerging: one coefficient per model, or per model and tensor


@dataclass
class FisherConfig:
    samples: int = 64  # examples per model (one backward pass each)
    labels: FisherLabels = FisherLabels.sampled  # sampled (true Fisher) | true (empirical Fisher)
    split: str = "train"  # data split of the model's own run config the Fisher is estimated on


@dataclass
class GreedyConfig:
    split: str = "val"  # held-out split that decides which models enter the soup
    metric: str = "accuracy"


@dataclass
class ActivationsConfig:
    samples: int = 256  # unlabelled examples per model whose linear-layer inputs RegMean's Grams sum over
    split: str = "train"  # data split of the model's own run config


@dataclass
class AdaMergingConfig:
    steps: int = 100  # optimizer steps of the coefficients (Adam, through the engine's Trainer)
    lr: float = 1e-3  # the paper's learning rate
    granularity: Granularity = Granularity.layer  # task | layer
    init: float = 0.3  # starting coefficient (the paper's)
    split: str = "train"  # unlabelled data: this split of the base run's data settings (labels are not read)
    batch_size: int | None = None  # None = the base run's train.batch_size
    heads: bool = False  # multi-task: each model keeps its head, entropy on each model's own data with its head


@dataclass
class MergeConfig:
    method: str = "linear"  # a registered merge method (merging.list_merge_methods()) or greedy_soup
    models: list[str] = field(default_factory=list)  # run folders or saved model folders
    base: str | None = None  # shared starting point (task_arithmetic, ties, dare)
    params: dict[str, Any] = field(default_factory=dict)  # the method's keyword arguments
    policies: dict[str, Policy] = field(default_factory=dict)  # fnmatch pattern -> what happens to those tensors
    output: str = "runs/merged"
    fisher: FisherConfig = field(default_factory=FisherConfig)
    greedy: GreedyConfig = field(default_factory=GreedyConfig)
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)  # regmean
    adamerging: AdaMergingConfig = field(default_factory=AdaMergingConfig)


class MergeConfigError(ValueError):
    """A merge recipe a user wrote is wrong; the message names the key and the fix."""


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> DictConfig:
    """Schema <- recipe YAML <- ``key=value`` overrides (the run configs' loader); unknown keys fail naming the
    nearest valid one."""
    if path is not None and not Path(path).is_file():
        raise MergeConfigError(f"merge recipe {str(path)!r} does not exist (e.g. configs/merge/ties.yaml)")
    cfg = load_layers(MergeConfig, [path] if path is not None else [], overrides, MergeConfigError)
    if not cfg.models:
        raise MergeConfigError("the recipe lists no models: set models: [runs/a, runs/b, ...]")
    return cfg
