"""Build datasets, tokenizer, model and loaders from a resolved config (the only place that wires them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import AutoTokenizer

from data import (
    Collator,
    ExampleProcessor,
    ProcessedDataset,
    SplitNotFoundError,
    build_dataloader,
    build_image_transform,
    create_dataset,
    dataset_params,
)
from fusion.registry import get_fusion_class
from models import MultimodalModel
from models.errors import hf_model_hint

from .config import to_dict


def build_dataset(cfg: DictConfig, split: str, languages: list[str] | None = None):
    """One split of the configured dataset, optionally restricted to some languages.

    Raises:
        SplitNotFoundError: the dataset has no such split; the message names the config key that asked for it
            (``data.test_split``...) and the splits that exist (``available``). A missing ``data.root`` is a plain
            ``FileNotFoundError``.
    """
    params: dict[str, Any] = dict(to_dict(cfg.data.params))
    accepted = dataset_params(cfg.data.name)
    if "on_error" in accepted:
        params.setdefault("on_error", cfg.data.on_error)
    if "allow_outside_root" in accepted:  # readers of data files that name image paths
        params.setdefault("allow_outside_root", cfg.data.allow_outside_root)
    try:
        dataset = create_dataset(cfg.data.name, cfg.data.root, split, **params)
    except SplitNotFoundError as err:
        keys = [f"data.{k}" for k in ("train_split", "eval_split", "test_split") if cfg.data[k] == split]
        if not keys:
            raise
        raise err.for_key(keys[0]) from None
    if languages:
        unknown = sorted(set(languages) - set(dataset.languages))
        if unknown:
            raise ValueError(f"languages {unknown} not in split {split!r} of {cfg.data.root!r} "
                             f"(it has {dataset.languages})")
        dataset.records = [r for r in dataset.records if r.get("lang") in set(languages)]
    return dataset


def model_reads_text(cfg: DictConfig) -> bool:
    return "text" in get_fusion_class(cfg.model.fusion.name).modalities


def build_tokenizer(cfg: DictConfig, model_dir: str | Path | None = None):
    """The tokenizer saved with a model, the configured one, the text model's own, or the dataset's (tiny).

    Returns None when the model has no text tower.
    """
    if not model_reads_text(cfg):
        return None
    text = cfg.model.text
    key = "model.text.tokenizer"
    if model_dir is not None and (Path(model_dir) / "tokenizer").is_dir():
        source = str(Path(model_dir) / "tokenizer")
    elif text.tokenizer:
        source = text.tokenizer
    elif text.name:
        source, key = text.name, "model.text.name"
    else:
        source = str(Path(cfg.data.root) / "tokenizer")
        if not Path(source).is_dir():
            raise FileNotFoundError(
                f"the tiny text encoder needs a tokenizer and {source!r} does not exist: set model.text.tokenizer "
                "to a tokenizer directory, or use a dataset that ships one (the embedded 'shapes' benchmark does)")
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise hf_model_hint("tokenizer", source, err, key) from err


def build_model(cfg: DictConfig, num_outputs: int, label_names: list[str], multi_label: bool, tokenizer: Any,
                ) -> MultimodalModel:
    model_cfg = to_dict(cfg.model)
    data = to_dict(cfg.data)  # plain lists: the overrides are saved as JSON with the model
    overrides = {k: data[k] for k in ("image_size", "mean", "std") if data[k] is not None}
    return MultimodalModel(model_cfg, num_outputs, label_names, multi_label,
                           vocab_size=len(tokenizer) if tokenizer is not None else None, image_overrides=overrides)


def build_loader(cfg: DictConfig, dataset, tokenizer, image_data_config: dict | None, train: bool,
                 languages: list[str], batch_size: int | None = None):
    transform = build_image_transform(image_data_config, train=train, augment=train and cfg.data.augment) \
        if image_data_config and dataset.has_image else None
    use_images = dataset.has_image and image_data_config is not None
    use_text = dataset.has_text and tokenizer is not None
    streamed = hasattr(dataset, "process")  # sharded input (data/webdataset.py): processed as it streams by
    cache = None
    if cfg.data.cache_images and use_images:
        if streamed:
            raise ValueError("data.cache_images=true needs a dataset with stable indices; streamed shards "
                             f"(data.name={cfg.data.name}) have none: set data.cache_images=false")
        cache = "decoded" if train and cfg.data.augment else "pixels"  # random augmentation must rerun each read
    processor = ExampleProcessor(transform, cfg.data.on_error, load_images=use_images, cache=cache)
    processed = dataset.process(processor) if streamed else ProcessedDataset(dataset, processor)
    collator = Collator(tokenizer if use_text else None, cfg.data.max_text_length, len(dataset.label_names),
                        dataset.multi_label, languages, has_text=use_text, has_image=use_images,
                        image_shape=tuple(image_data_config["input_size"]) if image_data_config else None)
    return build_dataloader(
        processed, collator, batch_size or (cfg.train.batch_size if train else cfg.eval.batch_size),
        shuffle=train and not streamed,  # a stream shuffles itself, with a buffer
        num_workers=cfg.data.num_workers, pin_memory=cfg.data.pin_memory,
        # A cache lives in each worker process: workers must survive the epoch for it to be read again.
        persistent_workers=(cfg.data.persistent_workers or cache is not None) and cfg.data.num_workers > 0,
        seed=cfg.run.seed,
    )
