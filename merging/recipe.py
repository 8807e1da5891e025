"""The merge recipe (``configs/merge/*.yaml``): a typed schema, loaded with dotted overrides like run configs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass
class FisherConfig:
    samples: int = 64  # examples per model (one backward pass each)
    labels: str = "sampled"  # sampled (true Fisher) | true (empirical Fisher)
    split: str = "train"  # data split of the model's own run config the Fisher is estimated on


@dataclass
class GreedyConfig:
    split: str = "val"  # held-out split that decides which models enter the soup
    metric: str = "accuracy"


@dataclass
class MergeConfig:
    method: str = "linear"  # a registered merge method (merging.list_merge_methods()) or greedy_soup
    models: list[str] = field(default_factory=list)  # run folders or saved model folders
    base: str | None = None  # shared starting point (task_arithmetic, ties, dare)
    params: dict[str, Any] = field(default_factory=dict)  # the method's keyword arguments
    policies: dict[str, str] = field(default_factory=dict)  # fnmatch pattern -> merge | keep_base | skip | shape_match
    output: str = "runs/merged"
    fisher: FisherConfig = field(default_factory=FisherConfig)
    greedy: GreedyConfig = field(default_factory=GreedyConfig)


class MergeConfigError(ValueError):
    """A merge recipe a user wrote is wrong; the message names the key and the fix."""


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> DictConfig:
    """Schema <- recipe YAML <- ``key=value`` overrides; unknown keys fail naming the nearest valid one."""
    cfg = OmegaConf.structured(MergeConfig)
    layers = []
    if path is not None:
        if not Path(path).is_file():
            raise MergeConfigError(f"merge recipe {str(path)!r} does not exist (e.g. configs/merge/ties.yaml)")
        layers.append((OmegaConf.load(path), str(path)))
    for item in overrides or []:
        if "=" not in item:
            raise MergeConfigError(f"override {item!r} is not of the form key=value (e.g. params.density=0.3)")
        layers.append((OmegaConf.from_dotlist([item]), f"override {item!r}"))
    for layer, source in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", "") or ""
            near = difflib.get_close_matches(key, list(MergeConfig.__dataclass_fields__), n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise MergeConfigError(f"{source}: {str(err).splitlines()[0]}.{hint}") from None
    if not cfg.models:
        raise MergeConfigError("the recipe lists no models: set models: [runs/a, runs/b, ...]")
    if cfg.fisher.labels not in ("sampled", "true"):
        raise MergeConfigError(f"fisher.labels is {cfg.fisher.labels!r}; choose sampled or true")
    return cfg
