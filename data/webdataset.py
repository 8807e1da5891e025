"""Sharded, streamed input: WebDataset-style tar shards read with the standard ``tarfile`` module.

For datasets too large to index in memory or to hold on one disk as loose files: ``root/<split>-000000.tar``,
``root/<split>-000001.tar``... (``shards`` pattern), each holding samples as consecutive members sharing a key:
``<key>.jpg|.jpeg|.png|.webp`` (image bytes), ``<key>.txt`` (text), ``<key>.cls`` (label name or index). Samples
stream out in shard order; the training split is shuffled with a buffer (``shuffle_buffer`` samples) and a
per-epoch shard order, not globally. DataLoader workers read disjoint shards.

Opening a split makes one pass over the tar headers (no image is decoded) to count samples and collect labels, so
``len()`` and the step count work as for in-memory datasets. A bad sample is reported as ``<shard>:<n>`` (the n-th
sample of that shard) and, under ``on_error=skip``, counted in the run folder's ``data_skipped.json``.
"""

from __future__ import annotations

import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from .labels import LabelMap, check_label_case, label_names_from_rows, read_label_file
from .records import DataError, check_on_error
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, make_record
from .splits import SplitNotFoundError, require_root, splits_matching

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _samples(shard: Path) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """``(n, key, {ext: bytes})`` for the consecutive member groups of one tar shard (n counts from 1)."""
    key, group, n = None, {}, 0
    with tarfile.open(shard) as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.rsplit("/", 1)[-1]
            k, _, ext = name.partition(".")
            if k != key and group:
                n += 1
                yield n, key, group
                group = {}
            key = k
            group[ext.lower()] = tar.extractfile(member).read()
    if group:
        yield n + 1, key, group


def _row(group: dict[str, bytes]) -> dict[str, Any]:
    image = next((group[e] for e in IMAGE_EXTS if e in group), None)
    text = group["txt"].decode("utf-8") if "txt" in group else None
    label = group["cls"].decode("utf-8") if "cls" in group else None
    return {"text": text, "image": image, "label": label}


class ShardedDataset(IterableDataset):
    """Records streamed from tar shards; same attributes as :class:`~data.records.MultimodalDataset`.

    ``process(processor)`` gives the stream of processed examples the :class:`~data.processing.Collator` batches.
    """

    multi_label = False
    languages: list[str] = []

    def __init__(self, shards: list[Path], labels: LabelMap, length: int, has_text: bool, has_image: bool,
                 labelled: bool, shuffle_buffer: int, seed: int, on_error: str, max_text_chars: int | None):
        self.shards, self.labels, self.label_names, self.length = shards, labels, labels.names, length
        self.has_text, self.has_image = has_text, has_image
        self.labelled = labelled
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0
        self.on_error, self.max_text_chars = on_error, max_text_chars
        self.skipped: list[dict[str, Any]] = []  # problems surface while streaming, through the batches
        self.cols = Columns(id="id", text="text" if has_text else None, image="image" if has_image else None,
                            label="label")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:  # called by Accelerate's loader each epoch: a new shuffle
        self.epoch = epoch

    def _records(self) -> Iterator[dict[str, Any]]:
        """Records (or ``{"skipped": ...}``) of this worker's shards."""
        shards = list(self.shards)
        if self.shuffle_buffer:
            random.Random(self.seed + self.epoch).shuffle(shards)
        info = get_worker_info()
        if info is not None:
            shards = shards[info.id::info.num_workers]
        for shard in shards:
            for n, key, group in _samples(shard):
                row = {"id": key, **_row(group)}
                try:
                    record = make_record(row, self.cols, self.labels, str(shard.parent), str(shard), n,
                                         max_text_chars=self.max_text_chars)
                    if self.labelled and record["label"] is None:
                        raise DataError("missing_label", str(shard), n, f"sample {key!r} has no label, but other "
                                        "samples of this split have one")
                    yield record
                except DataError as e:
                    if self.on_error == "raise":
                        raise
                    yield {"skipped": e.as_skip()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        items = self._records()
        if not self.shuffle_buffer:
            yield from items
            return
        rng, buffer = random.Random(self.seed * 1000 + self.epoch), []
        for item in items:
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def process(self, processor) -> ProcessedStream:
        return ProcessedStream(self, processor)


class ProcessedStream(IterableDataset):
    """A :class:`ShardedDataset` whose records go through an :class:`~data.processing.ExampleProcessor`;
    ``index`` is the running position in the stream."""

    def __init__(self, dataset: ShardedDataset, processor):
        self.dataset, self.processor = dataset, processor

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i, record in enumerate(self.dataset):
            yield {"index": i, **record} if "skipped" in record else self.processor(record, i)


@register_dataset("webdataset")
def build_webdataset(
    root: str,
    split: str,
    shards: str = "{split}-*.tar",
    labels: list[str] | None = None,
    train_split: str = "train",
    shuffle_buffer: int = 1000,
    seed: int = 0,
    label_case: str = "error",
    on_error: str = "raise",
    max_text_chars: int | None = MAX_TEXT_CHARS,
) -> ShardedDataset:
    """A split streamed from tar shards.

    Args:
        root: folder of the shards.
        split: split name, substituted into ``shards``.
        shards: glob pattern of the split's shards relative to root (sorted).
        labels: class names (default ``root/labels.json``, else the labels found in the training split's shards,
            under the label policy of :mod:`data.labels`).
        train_split: the split that is buffer-shuffled (the others stream in order) and defines found labels.
        shuffle_buffer: samples held for the buffer shuffle of the training split (0 = stream in order).
        seed: seed of the shard order and buffer shuffle (combined with the epoch).
        on_error / max_text_chars / label_case: see :func:`data.table.build_table`.
    """
    check_on_error(on_error)
    check_label_case(label_case)
    base = require_root(root)
    files = sorted(base.glob(shards.format(split=split)))
    if not files:
        raise SplitNotFoundError(split, root, splits_matching(base, shards),
                                 f"no shard matches {base / shards.format(split=split)}")
    count, exts, found = 0, set(), []
    for shard in files:  # one pass over headers and the small .cls members: no image is decoded
        for n, _, group in _samples(shard):
            count += 1
            exts.update(group)
            if "cls" in group:
                found.append((str(shard), n, {"label": group["cls"].decode("utf-8")}))
    if labels is None:
        labels = read_label_file(base)
    if labels is None:
        if split != train_split and sorted(base.glob(shards.format(split=train_split))):
            labels = build_webdataset(root, train_split, shards, None, train_split, 0, seed, label_case).label_names
        else:
            labels = label_names_from_rows(found, "label", label_case=label_case)
    return ShardedDataset(files, LabelMap(labels, label_case), count, "txt" in exts, bool(exts & set(IMAGE_EXTS)),
                          "cls" in exts, shuffle_buffer if split == train_split else 0, seed, on_error, max_text_chars)

