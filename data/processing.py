"""Per-modality processing and collation: image transforms from the vision encoder's timm data config,
image loading with file:line errors, and the :class:`Collator` that defines the batch the model sees.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .images import open_rgb
from .records import DataError, MultimodalDataset, check_on_error

_TRANSFORM_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def build_image_transform(data_config: dict, train: bool = False, augment: bool = False, **overrides) -> Callable:
    """A PIL -> (3, H, W) float tensor transform from timm's data config (``timm.data.resolve_data_config``).

    Without ``augment`` training uses the eval transform (resize, centre crop, normalise): random flips would
    falsify left/right statements. With ``train and augment`` it is timm's training transform with flips and colour
    jitter off (they change what statements mean) and a mild random-resized-crop scale (0.75-1), unless
    ``overrides`` (``create_transform`` kwargs) say otherwise.
    """
    from timm.data import create_transform

    cfg = {k: data_config[k] for k in _TRANSFORM_KEYS if k in data_config}
    if train and augment:
        cfg.update({"hflip": 0.0, "vflip": 0.0, "scale": (0.75, 1.0), "color_jitter": 0.0})
        cfg.update(overrides)
        return create_transform(is_training=True, **cfg)
    cfg.update(overrides)
    return create_transform(is_training=False, **cfg)


class ExampleProcessor:
    """Turns a raw record into a model-ready example: loads the image (RGB) and transforms it.

    Returns ``{"index", "text", "pixel_values" (3, H, W) | None, "label", "lang"}``; for an unreadable image it
    raises :class:`DataError` naming the image and the data file's line, or with ``on_error="skip"`` returns
    ``{"index", "skipped": {reason, file, line, detail}}``.
    """

    def __init__(self, image_transform: Callable | None = None, on_error: str = "raise", load_images: bool = True,
                 cache: str | None = None):
        """``cache``: None; ``"pixels"`` keeps each transformed image tensor by dataset index (for a deterministic
        transform); ``"decoded"`` keeps each decoded RGB image and transforms it on every read (for augmentation).
        Each DataLoader worker process fills its own cache."""
        if cache not in (None, "pixels", "decoded"):
            raise ValueError(f"cache must be None, 'pixels' or 'decoded', got {cache!r}")
        self.image_transform = image_transform
        self.on_error = check_on_error(on_error)
        self.load_images = load_images  # False for a model without a vision tower: never decode images
        self.cache = cache
        self._cached: dict[int, Any] = {}

    def load_image(self, record: dict[str, Any]) -> Image.Image:
        source = record["image"]
        try:  # a path, or the encoded bytes a HuggingFace dataset stores
            return open_rgb(source)
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(
                "unreadable_image", record["file"], record["line"],
                f"cannot read image {'(embedded bytes)' if isinstance(source, bytes) else source}: {e}",
            ) from None

    def __call__(self, record: dict[str, Any], index: int) -> dict[str, Any]:
        pixels = None
        if record["image"] is not None and self.load_images:
            cached = self._cached.get(index)  # transformed pixels or the decoded image, per self.cache
            if self.cache == "pixels" and cached is not None:
                return self._example(record, index, cached)
            try:
                image = cached if cached is not None else self.load_image(record)
            except DataError as e:
                if self.on_error == "raise":
                    raise
                return {"index": index, "skipped": e.as_skip()}
            pixels = self.image_transform(image) if self.image_transform is not None else image
            if self.cache:
                self._cached[index] = pixels if self.cache == "pixels" else image
        return self._example(record, index, pixels)

    @staticmethod
    def _example(record: dict[str, Any], index: int, pixels: Any) -> dict[str, Any]:
        return {"index": index, "text": record["text"], "pair": record.get("pair"), "pixel_values": pixels,
                "label": record["label"], "lang": record["lang"]}  # fmt: skip


class ProcessedDataset(Dataset):
    """A :class:`MultimodalDataset` whose items go through an :class:`ExampleProcessor`."""

    def __init__(self, dataset: MultimodalDataset, processor: ExampleProcessor):
        self.dataset, self.processor = dataset, processor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.processor(self.dataset[index], index)

    def __getattr__(self, name: str):  # label_names, multi_label, languages, has_text, ...
        if name in ("dataset", "processor"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


class Collator:
    """Batches processed examples; the batch dict is the contract with the model and engine.

    Keys: ``input_ids``/``attention_mask`` (B, L) long [if text]; ``pair_input_ids``/``pair_attention_mask``
    (B, L') long [if the rows are text pairs, e.g. a sentence and its translation]; ``pixel_values`` (B, 3, H, W)
    float [if image];
    ``text_present``/``image_present`` (B,) bool; ``labels`` (B,) long, or (B, C) float multi-hot if multi-label;
    ``index`` (B,) long dataset positions; ``lang`` (B,) long index into ``languages`` (-1 unknown); ``skipped``:
    skip dicts of examples dropped from this batch. Missing modalities are padded (empty text, zero image).
    """

    def __init__(
        self,
        tokenizer=None,
        max_length: int = 64,
        num_labels: int = 2,
        multi_label: bool = False,
        languages: list[str] | None = None,
        has_text: bool | None = None,
        has_image: bool = True,
        image_shape: tuple[int, int, int] | None = None,
    ):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.num_labels, self.multi_label = num_labels, multi_label
        self.lang_index = {lang: i for i, lang in enumerate(languages or [])}
        self.has_text = tokenizer is not None if has_text is None else has_text
        self.has_image, self.image_shape = has_image, image_shape
        if self.has_text and tokenizer is None:
            raise ValueError("a dataset with text needs a tokenizer")

    @classmethod
    def for_dataset(cls, dataset, tokenizer=None, max_length: int = 64, **kwargs) -> Collator:
        """A collator configured from a dataset's labels, languages and modalities; ``kwargs`` override them."""
        kwargs = {"has_text": dataset.has_text, "has_image": dataset.has_image, **kwargs}
        return cls(tokenizer, max_length, len(dataset.label_names), dataset.multi_label, dataset.languages, **kwargs)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        skipped = [dict(e["skipped"], index=e["index"]) for e in examples if "skipped" in e]
        examples = [e for e in examples if "skipped" not in e]
        batch: dict[str, Any] = {"index": torch.tensor([e["index"] for e in examples], dtype=torch.long)}
        texts = [e["text"] for e in examples]
        batch["text_present"] = torch.tensor([t is not None for t in texts], dtype=torch.bool)
        if self.has_text:
            if examples:
                tok = self.tokenizer([t or "" for t in texts], padding="longest", truncation=True,
                                     max_length=self.max_length, return_tensors="pt")  # fmt: skip
                batch["input_ids"] = tok["input_ids"].long()
                batch["attention_mask"] = tok["attention_mask"].long()
            else:
                batch["input_ids"] = batch["attention_mask"] = torch.zeros(0, 0, dtype=torch.long)
            pairs = [e.get("pair") for e in examples]
            if any(p is not None for p in pairs):
                tok = self.tokenizer([p or "" for p in pairs], padding="longest", truncation=True,
                                     max_length=self.max_length, return_tensors="pt")  # fmt: skip
                batch["pair_input_ids"] = tok["input_ids"].long()
                batch["pair_attention_mask"] = tok["attention_mask"].long()
        images = [e["pixel_values"] for e in examples]
        batch["image_present"] = torch.tensor([p is not None for p in images], dtype=torch.bool)
        if self.has_image:
            batch["pixel_values"] = self._stack_images(images)
        labels = [e["label"] for e in examples]
        if self.multi_label:
            multi_hot = torch.zeros(len(labels), self.num_labels)
            for row, label in enumerate(labels):
                if label is not None:  # an unlabelled test row stays all-zero
                    multi_hot[row, label] = 1.0
            batch["labels"] = multi_hot
        else:  # -1 marks an unlabelled row (a test split released without labels)
            batch["labels"] = torch.tensor([-1 if x is None else x for x in labels], dtype=torch.long)
        batch["lang"] = torch.tensor([self.lang_index.get(e["lang"], -1) for e in examples], dtype=torch.long)
        batch["skipped"] = skipped
        return batch

    def _stack_images(self, images: list) -> torch.Tensor:
        shape = next((tuple(p.shape) for p in images if p is not None), self.image_shape)
        if shape is None:
            raise ValueError("no image in this batch and no image_shape given to the Collator")
        self.image_shape = shape
        if not images:
            return torch.zeros(0, *shape)
        return torch.stack([p.float() if p is not None else torch.zeros(shape) for p in images])


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn``: loader workers ignore SIGTERM / SIGUSR1. A scheduler signals the whole process group
    before pre-emption; the main process saves a checkpoint and needs its workers alive to finish the step (they
    still exit with it: each worker watches its parent)."""
    for name in ("SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def build_dataloader(
    dataset: Dataset,
    collator: Callable,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose shuffling order is fixed by ``seed`` (a dedicated ``torch.Generator``)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        generator=generator,
        drop_last=drop_last,
        worker_init_fn=ignore_stop_signals if num_workers > 0 else None,
    )
