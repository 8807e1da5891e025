"""Inputs for prediction: a jsonl file, a folder of images, or one image + text, batched like training data.

Rows need no label. A jsonl row is ``{"id"?, "text"?, "img" | "image"?}`` (image paths relative to the file's
folder; at least one modality); a folder gives one row per image, its text from ``<stem>.txt`` beside it if present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data import (
    Collator,
    DataError,
    ExampleProcessor,
    MultimodalDataset,
    ProcessedDataset,
    build_dataloader,
    build_image_transform,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _record(id_: str, text: str | None, image: str | None, file: str, line: int) -> dict[str, Any]:
    if text is None and image is None:
        raise DataError("empty_row", file, line, "the row has neither text nor an image")
    if image is not None and not Path(image).is_file():
        raise DataError("missing_image", file, line, f"image file {image} does not exist")
    return {"id": id_, "text": text, "image": image, "label": 0, "lang": None, "file": file, "line": line}


def records_from_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no jsonl file {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as err:
                raise DataError("malformed_json", str(path), line_no, str(err)) from None
            image = obj.get("img", obj.get("image"))
            image = str((path.parent / image).resolve()) if image is not None else None
            records.append(_record(str(obj.get("id", line_no)), obj.get("text"), image, str(path), line_no))
    return records


def records_from_folder(folder: str | Path, text: str | None = None) -> list[dict[str, Any]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    records = []
    for i, image in enumerate(images):
        caption = image.with_suffix(".txt")
        row_text = caption.read_text(encoding="utf-8").strip() if caption.is_file() else text
        records.append(_record(image.stem, row_text, str(image.resolve()), str(folder), i + 1))
    return records


def records_from_args(image: str | None, text: str | None) -> list[dict[str, Any]]:
    return [_record("0", text, str(Path(image).resolve()) if image else None, "<command line>", 1)]


def prediction_loader(records: list[dict[str, Any]], model: Any, tokenizer: Any, max_length: int, batch_size: int):
    """Batches of ``records`` in the model's own preprocessing (its timm data config and tokenizer), in order."""
    dataset = MultimodalDataset(records, model.label_names)
    image_cfg = model.image_data_config if "image" in model.modalities else None
    use_images = image_cfg is not None and dataset.has_image
    transform = build_image_transform(image_cfg) if use_images else None
    use_text = "text" in model.modalities and tokenizer is not None
    collator = Collator(tokenizer if use_text else None, max_length, len(model.label_names), False, [],
                        has_text=use_text, has_image=image_cfg is not None,
                        image_shape=tuple(image_cfg["input_size"]) if image_cfg else None)
    processed = ProcessedDataset(dataset, ExampleProcessor(transform, "raise", load_images=use_images))
    return build_dataloader(processed, collator, batch_size, shuffle=False)
