"""Image-only classification in the torchvision ImageFolder layout (e.g. CIFAR-10 exported to folders).

``root/<split>/<class>/*.png`` for each split, or a flat ``root/<class>/*.png``. The held-out split
(``dev_split``, default ``val``) is carved from the training images per class with a fixed seed when it has no
folder of its own; a flat layout therefore has exactly two splits, ``train_split`` and ``dev_split``. Records
carry no text, so the model builds no text tower and no tokenizer (``model.fusion.name=image_only``).
"""

from __future__ import annotations

from .labels import LabelMap, label_names_from_rows
from .records import MultimodalDataset
from .registry import register_dataset
from .rows import Columns, carve_dev, class_folder_files, records_from_rows
from .splits import SplitNotFoundError, require_root


@register_dataset("image_folder")
def build_image_folder(
    root: str,
    split: str,
    train_split: str = "train",
    dev_split: str = "val",
    dev_fraction: float = 0.1,
    seed: int = 0,
    on_error: str = "raise",
    check_images: bool = False,
    label_case: str = "error",
) -> MultimodalDataset:
    """One split of an ImageFolder dataset; the classes are the training folder's class sub-folders that hold
    images, named under the label policy of :mod:`data.labels` (folders ``1``..``10`` sort numerically).

    Args:
        root: dataset folder: ``root/<split>/<class>/`` per split, or a flat ``root/<class>/``.
        split: a sub-folder of ``root`` (``train``, ``val``, ``test``...), or the carved ``dev_split``.
        train_split: the training folder; its sub-folders define the label set.
        dev_split: the held-out split; without a folder of its own it is carved from the training images
            (``dev_fraction`` of each class, seeded) and ``train_split`` then excludes those images.
        dev_fraction: fraction carved for ``dev_split`` (0 = never carve).
        seed: seed of the carve.
        on_error / check_images / label_case: see :func:`data.table.build_table`.
    """
    base = require_root(root)
    flat = not (base / train_split).is_dir()
    train_dir = base if flat else base / train_split
    carve = dev_fraction > 0 and (flat or not (base / dev_split).is_dir())
    folders = [] if flat else [p.name for p in base.iterdir() if p.is_dir()]
    available = ([train_split] if flat else folders) + ([dev_split] if carve else [])
    if split not in available:
        raise SplitNotFoundError(split, root, available, "a flat root/<class>/ layout has only train_split and the "
                                 "carved dev_split" if flat else f"set data.params.dev_split={split} with "
                                 "dev_fraction > 0 to carve it from the training images")
    train_items = class_folder_files(train_dir)
    names = label_names_from_rows(((str(f), 1, {"label": c}) for c, f in train_items), "label",
                                  label_case=label_case)
    if split in (train_split, dev_split) and carve:
        items = carve_dev(train_items, "train" if split == train_split else "dev", dev_fraction, seed)
    else:
        items = train_items if split == train_split else class_folder_files(base / split)
    if not items:
        raise FileNotFoundError(f"image folder dataset: no images for split {split!r} under {train_dir}/<class>/ "
                                "(expected class sub-folders of .png/.jpg files)")
    rows = ((str(path), 1, {"id": path.stem, "image": str(path), "label": label}) for label, path in items)
    cols = Columns(id="id", text=None, image="image", label="label")
    return records_from_rows(rows, cols, LabelMap(names, label_case), str(base.resolve()), on_error, check_images,
                             multi_label=False)
