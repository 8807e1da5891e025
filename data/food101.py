"""UPMC Food-101 (Wang et al., 2015, "Recipe recognition with large multimodal food dataset"): a food photo and
the text of the web page it came from -> one of 101 dishes.

Layout as released: ``root/images/{train,test}/<label>/<name>.jpg`` and ``root/texts_txt/<label>/<name>.txt``.
The release has no dev split, so ``dev`` is carved from ``train`` per class with a fixed seed (and ``train``
then excludes it): the same ``dev_fraction`` and ``seed`` always give the same split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .labels import LabelMap, label_names_from_rows
from .records import DataError, MultimodalDataset
from .registry import register_dataset
from .rows import Columns, carve_dev, class_folder_files, records_from_rows
from .splits import SplitNotFoundError, require_root


def _rows(items: list[tuple[str, Path]], text_dir: Path) -> Iterator[tuple[str, int, Any]]:
    for label, image in items:
        text_file = text_dir / label / f"{image.stem}.txt"
        try:
            text = text_file.read_text(encoding="utf-8", errors="strict")
        except FileNotFoundError:
            yield str(image), 1, DataError("missing_text", str(image), 1, f"no text file {text_file}")
            continue
        except (OSError, UnicodeDecodeError) as e:
            yield str(text_file), 1, DataError("unreadable_text", str(text_file), 1, str(e))
            continue
        yield str(image), 1, {"id": image.stem, "text": text, "image": str(image), "label": label}


@register_dataset("food101")
def build_food101(
    root: str,
    split: str,
    dev_fraction: float = 0.1,
    seed: int = 0,
    text_dir: str = "texts_txt",
    on_error: str = "raise",
    check_images: bool = False,
    max_text_chars: int | None = None,
    label_case: str = "error",
) -> MultimodalDataset:
    """One split of UPMC Food-101.

    Args:
        root: the folder holding ``images/`` and ``texts_txt/``.
        split: ``train`` (minus the dev part), ``dev`` (carved from train) or ``test``.
        dev_fraction: fraction of each class of ``images/train`` held out as ``dev`` (0 = no dev split).
        seed: seed of the dev carve.
        text_dir: folder of the per-image texts, relative to root.
        on_error / check_images: see :func:`data.table.build_table`.
        max_text_chars: longer texts are an error (default: no limit; the texts are whole web pages).
        label_case: see :func:`data.table.build_table`.
    """
    base = require_root(root)
    train_dir = base / "images" / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir} does not exist: expected the UPMC Food-101 layout "
                                "images/{train,test}/<label>/*.jpg + texts_txt/<label>/*.txt under data.root")
    train_items = class_folder_files(train_dir)
    names = label_names_from_rows(((str(f), 1, {"label": c}) for c, f in train_items), "label",
                                  label_case=label_case)
    available = ["train", "test"] + (["dev"] if dev_fraction > 0 else [])
    if split == "train" or (split == "dev" and dev_fraction > 0):
        items = carve_dev(train_items, split, dev_fraction, seed) if dev_fraction > 0 else train_items
    elif split == "test":
        items = class_folder_files(base / "images" / "test")
    else:
        hint = "the release has no dev split: dev_fraction > 0 carves one from train" if split == "dev" else ""
        raise SplitNotFoundError(split, root, available, hint)
    cols = Columns(id="id", text="text", image="image", label="label")
    return records_from_rows(_rows(items, base / text_dir), cols, LabelMap(names, label_case), str(base.resolve()),
                             on_error, check_images, max_text_chars, multi_label=False)
