"""Typed run configuration: schema, defaults, experiment YAML, dotted overrides.

A run's config is built in three layers (DINOv2 style): ``configs/defaults.yaml`` (every key), an experiment YAML
holding only its changes, then ``a.b=c`` overrides from the command line. Every layer is checked against the
schema below: an unknown key or a value of the wrong type fails at once, naming the nearest valid key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException


def shipped_config(relative: str) -> Path:
    """A file of the project's ``configs/`` folder: the checkout's own when the code runs from one, else the copy
    installed with the package as ``crossfuse.configs``."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if (checkout / "defaults.yaml").is_file():
        return checkout / relative
    try:
        return Path(str(resources.files("crossfuse.configs"))) / relative
    except ModuleNotFoundError:
        return checkout / relative


DEFAULTS = shipped_config("defaults.yaml")


class Choice(str, Enum):
    """A config field with a fixed set of values: OmegaConf refuses anything else, listing the valid ones. Members
    compare equal to (and print as) their string value, so code reads ``cfg.run.tracker == "wandb"``."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def choice(name: str, *values: str) -> type[Choice]:
    """A :class:`Choice` enum whose member names are its values (``raise`` included, which class syntax forbids)."""
    return Choice(name, {v: v for v in values})


Tracker = choice("Tracker", "none", "wandb", "tensorboard")
WandbMode = choice("WandbMode", "online", "offline", "disabled")
OnError = choice("OnError", "raise", "skip")
Pooling = choice("Pooling", "cls", "mean")
Schedule = choice("Schedule", "cosine", "linear", "constant")
Averaging = choice("Averaging", "none", "ema", "swa")
Precision = choice("Precision", "no", "fp16", "bf16")
NonFinite = choice("NonFinite", "stop", "skip")
Mode = choice("Mode", "max", "min")


@dataclass
class RunConfig:
    name: str | None = None  # the run folder under output_dir; None: train.py names it after its start time
    output_dir: str = "runs"
    seed: int = 0
    tracker: Tracker = Tracker.none
    project: str = "crossfuse"
    group: str | None = None
    wandb_mode: WandbMode | None = None  # None = $WANDB_MODE or W&B's default
    log_every: int = 10
    progress_bar: bool = True
    overwrite: bool = False  # allow training into a run folder that already holds a model


@dataclass
class DataConfig:
    name: str = "shapes"
    root: str = "data_cache/shapes"
    train_split: str = "train"
    eval_split: str = "val"
    test_split: str | None = "test"
    languages: list[str] | None = None  # train languages; None = all
    eval_languages: list[str] | None = None  # None = all languages in the eval split
    max_text_length: int = 32
    image_size: int | None = None  # None = the vision encoder's own input size
    mean: list[float] | None = None
    std: list[float] | None = None
    augment: bool = False
    # Keep each image in memory after its first read: the transformed tensor (or, with augment, the decoded image).
    # Costs N x 3 x H x W floats per loader process (8000 images at 32 px: 98 MB); for datasets that fit in memory.
    # With num_workers > 0 the workers are kept alive across epochs (persistent), or their caches would be lost.
    cache_images: bool = False
    on_error: OnError = OnError["raise"]
    allow_outside_root: bool = False  # read image paths of data files that leave the dataset folder
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # dataset-specific builder arguments


@dataclass
class TinyTextConfig:
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 256


@dataclass
class TextEncoderConfig:
    name: str | None = None  # HF model name or local directory; None = tiny BERT from `tiny`
    tokenizer: str | None = None  # None = the model's own, or the dataset's tokenizer/ for a tiny model
    pretrained: bool = True
    tiny: TinyTextConfig = field(default_factory=TinyTextConfig)
    pooling: Pooling = Pooling.cls
    freeze: bool = False
    unfreeze_last_n: int = 0
    gradient_checkpointing: bool = False


@dataclass
class VisionEncoderConfig:
    name: str = "vit_tiny_patch16_224"
    pretrained: bool = False
    checkpoint: str | None = None  # local weights file (safetensors or torch) loaded into the timm model
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to timm.create_model (img_size, depth, ...)
    freeze: bool = False
    gradient_checkpointing: bool = False
    channels_last: bool = False


@dataclass
class FusionConfig:
    name: str = "concat"
    dim: int = 256
    dropout: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)  # method-specific options, checked against the method


@dataclass
class HeadConfig:
    hidden: int = 0  # 0 = a single linear layer
    dropout: float = 0.1


@dataclass
class ModelConfig:
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    vision: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    modality_dropout: dict[str, float] = field(default_factory=dict)  # e.g. {text: 0.1, image: 0.1}


@dataclass
class OptimConfig:
    lr: float = 1e-3  # fusion, head and anything not an encoder
    encoder_lr: float | None = None  # None = lr
    weight_decay: float = 0.01  # never applied to norms, biases and embeddings
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Schedule = Schedule.cosine
    warmup_ratio: float = 0.05
    clip_grad: float = 1.0  # 0 = no clipping
    layer_decay: float = 1.0  # layer-wise LR decay of the encoders (Clark et al. 2020); 1.0 = off


@dataclass
class WeightAveragingConfig:
    name: Averaging = Averaging.none  # an averaged model saved as <run>/model_ema/ or model_swa/
    decay: float = 0.999  # EMA decay per update
    start_step: int = 0  # first optimizer step folded into the average
    every: int = 1  # update period in optimizer steps


@dataclass
class TrainConfig:
    task: str = "classification"
    task_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 1
    max_steps: int = 0  # >0 overrides epochs
    batch_size: int = 32
    grad_accum: int = 1
    mixed_precision: Precision | None = None  # None = from the Accelerate config
    compile: bool = False  # torch.compile the model (worth it on GPUs for long runs; first steps compile)
    eval_every: int = 0  # steps; 0 = at the end of each epoch
    save_every: int = 0  # steps; 0 = no periodic training state
    keep_last: int = 2
    best_metric: str = "accuracy"
    best_mode: Mode = Mode.max
    init_from: str | None = None  # a saved run, model directory or Hub repo id (org/name) to start from
    init_skip: list[str] = field(default_factory=list)  # tensors (fnmatch patterns) not loaded by init_from
    linear_probe_steps: int = 0  # LP-FT: encoders frozen for this many steps, then fine-tuned (Kumar et al. 2022)
    nonfinite: NonFinite = NonFinite.stop  # what a NaN/inf loss or gradient does
    # Resume: the checkpoint must restore everything (random states included) unless this allows otherwise.
    allow_inexact_resume: bool = False
    trust_checkpoint: bool = False  # allow resuming checkpoints that are pickles (DeepSpeed's): only your own
    weight_averaging: WeightAveragingConfig = field(default_factory=WeightAveragingConfig)


@dataclass
class EvalConfig:
    batch_size: int = 64
    modality_ablation: bool = True


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    """A config a user wrote is wrong; the message says where and how to fix it."""


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            keys.extend(_all_keys(node._get_node(k), full + "."))
    return keys


def _explain(err: OmegaConfBaseException, source: str, schema: type, error: type[ValueError]) -> ValueError:
    key = getattr(err, "full_key", None) or ""
    msg = str(err).splitlines()[0]
    if isinstance(err, ConfigKeyError) or "not in struct" in msg or "Key '" in msg and "not" in msg:
        valid = _all_keys(OmegaConf.structured(schema))
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
        leaf = key.rsplit(".", 1)[-1]
        if not near:
            near = [k for k in valid if k.rsplit(".", 1)[-1] == leaf][:1] or difflib.get_close_matches(
                leaf, [k.rsplit(".", 1)[-1] for k in valid], n=1
            )
        hint = f" Did you mean '{near[0]}'?" if near else ""
        return error(f"{source}: unknown config key '{key}'.{hint} (the schema lists every key)")
    return error(f"{source}: invalid value for '{key}': {msg}")


def _bare_no_is_a_string(layer: DictConfig) -> DictConfig:
    """YAML reads a bare ``no`` as False; ``train.mixed_precision: no`` means the string (no mixed precision)."""
    if isinstance(layer, DictConfig) and OmegaConf.select(layer, "train.mixed_precision") is False:
        OmegaConf.update(layer, "train.mixed_precision", "no")
    return layer


def load_layers(schema: type, files: list[str | Path], overrides: list[str] | None = None,
                error: type[ValueError] | None = None) -> DictConfig:
    """The one layered loader (DINOv2 style): ``schema`` (a dataclass, every key typed) <- each YAML file in order
    <- ``a.b=c`` overrides. An unknown key or a value of the wrong type (or outside a :class:`Choice`) raises
    ``error`` naming the layer, the key and the nearest valid key.

    ``key={}`` on the command line clears a mapping (merging a mapping otherwise keeps the keys it does not name).
    """
    error = error or ConfigError
    cfg = OmegaConf.structured(schema)
    layers: list[tuple[Any, str]] = []
    cleared: dict[str, int] = {}  # `key={}` overrides: key -> index of their layer
    for path in files:
        try:
            layer = OmegaConf.load(path)
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            raise error(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(layer, DictConfig):
            raise error(f"{path} holds a {type(layer).__name__.replace('Config', '').lower()}, not a mapping of "
                        "config keys (e.g. `optim: {lr: 0.001}`)")
        layers.append((layer, str(path)))
    for item in overrides or []:
        if "=" not in item:
            raise error(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
        try:
            layers.append((OmegaConf.from_dotlist([item]), f"override {item!r}"))
        except OmegaConfBaseException as err:
            raise error(f"override {item!r} could not be parsed: {err}") from None
        key, _, value = item.partition("=")
        if value.strip() == "{}":
            cleared[key.strip()] = len(layers) - 1
    for i, (layer, source) in enumerate(layers):
        try:
            cfg = OmegaConf.merge(cfg, _bare_no_is_a_string(layer))
        except OmegaConfBaseException as err:
            raise _explain(err, source, schema, error) from None
        for key in [k for k, at in cleared.items() if at == i]:
            OmegaConf.update(cfg, key, {}, merge=False)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def load_config(experiment: str | Path | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Resolve a run config: schema <- defaults.yaml <- experiment YAML <- dotted overrides.

    Args:
        experiment: path of an experiment YAML holding only changes (or None), or a shipped experiment's name.
        overrides: ``["optim.lr=3e-4", "model.fusion.name=gated"]`` style strings.

    Returns:
        A read-only, type-checked ``DictConfig`` with the ``Config`` schema.
    """
    if not DEFAULTS.is_file():
        raise ConfigError(f"{DEFAULTS} is missing: crossfuse was installed without its configs/ package data; "
                          "reinstall it (pip install crossfuse, or pip install -e . in a checkout)")
    files = [DEFAULTS] + ([experiment_path(experiment)] if experiment is not None else [])
    cfg = load_layers(Config, files, overrides)
    check_ranges(cfg)
    return cfg


_AT_LEAST_ONE = ("train.batch_size", "train.grad_accum", "train.keep_last", "train.epochs", "eval.batch_size",
                 "run.log_every", "data.max_text_length")
_NOT_NEGATIVE = ("train.max_steps", "train.eval_every", "train.save_every", "train.linear_probe_steps",
                 "data.num_workers", "optim.lr", "optim.clip_grad", "optim.weight_decay", "optim.warmup_ratio")


def check_ranges(cfg: DictConfig) -> None:
    """Values no run can use, refused before anything is built (``train.keep_last=0`` would delete every
    checkpoint as it is written)."""
    for key in _AT_LEAST_ONE:
        if OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"'{key}' is {OmegaConf.select(cfg, key)}; it must be at least 1")
    for key in _NOT_NEGATIVE:
        if OmegaConf.select(cfg, key) < 0:
            raise ConfigError(f"'{key}' is {OmegaConf.select(cfg, key)}; it must not be negative")
    if cfg.optim.encoder_lr is not None and cfg.optim.encoder_lr < 0:
        raise ConfigError(f"'optim.encoder_lr' is {cfg.optim.encoder_lr}; it must not be negative")


# What a resume may change: how the run is watched and fed, not what it computes. Anything else would make the
# continued run differ from the one its checkpoint belongs to, while config.yaml claimed otherwise.
RESUMABLE = ("run.progress_bar", "run.log_every", "run.tracker", "run.wandb_mode", "run.project", "run.group",
             "run.overwrite", "data.num_workers", "data.pin_memory", "data.persistent_workers", "data.cache_images",
             "eval.batch_size", "eval.modality_ablation", "train.save_every", "train.keep_last", "train.max_steps",
             "train.epochs", "train.trust_checkpoint", "train.allow_inexact_resume")


def config_changes(saved: DictConfig, given: DictConfig) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, given value)`` for every leaf that differs."""
    a, b = to_dict(saved), to_dict(given)

    def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict) and node:
            return {k: v for key, value in node.items() for k, v in leaves(value, f"{prefix}{key}.").items()}
        return {prefix[:-1]: node}

    la, lb = leaves(a), leaves(b)
    return [(k, la.get(k), lb.get(k)) for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k)]


def check_resume(saved_path: str | Path, given: DictConfig) -> list[tuple[str, Any, Any]]:
    """The changes a resume makes to the saved config: allowed ones are returned (they take effect and are recorded
    in config.yaml), any other is an error listing each key with both values."""
    saved = config_from_dict(OmegaConf.to_container(OmegaConf.load(saved_path)))
    changes = config_changes(saved, given)
    refused = [c for c in changes if not any(c[0] == k or c[0].startswith(k + ".") for k in RESUMABLE)]
    if refused:
        lines = "\n".join(f"  {k}: saved {a!r}, given {b!r}" for k, a, b in refused)
        raise ConfigError(f"--resume continues the run saved in {saved_path}, which was configured differently:\n"
                          f"{lines}\nresume with the saved values (drop these overrides), or start a new run from "
                          "this one with train.init_from")
    return changes


def experiment_path(experiment: str | Path) -> Path:
    """An experiment YAML: a path, or the name of one shipped with crossfuse (``quickstart``)."""
    path = Path(experiment)
    if path.is_file():
        return path
    shipped = shipped_config(f"experiments/{path.name}.yaml")
    if path.suffix == "" and len(path.parts) == 1 and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in shipped.parent.glob("*.yaml"))
    raise ConfigError(f"experiment config {str(path)!r} does not exist (expected a YAML file, e.g. "
                      f"configs/experiments/quickstart.yaml, or the name of a shipped one: {', '.join(names)})")


def config_from_dict(data: dict) -> DictConfig:
    """Rebuild a config saved with a run (validated against the current schema)."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(data))
    except OmegaConfBaseException as err:
        raise _explain(err, "saved config", Config, ConfigError) from None
    OmegaConf.set_readonly(cfg, True)
    return cfg


def save_config(cfg: DictConfig, path: str | Path) -> None:
    Path(path).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def to_dict(cfg: DictConfig) -> dict:
    """Plain Python containers (choices as their strings)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
