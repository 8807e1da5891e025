"""Image-only classification in the torchvision ImageFolder layout (e.g. CIFAR-10 exported to folders).

``root/<split>/<class>/*.png`` for each split, or a flat ``root/<class>/*.png``. A split with no folder of its
own (``val`` when only ``train/`` exists, or any split of a flat layout) is carved from the training images per
class with a fixed seed. Records carry no text, so the model builds no text tower and no tokenizer
(``model.fusion.name=image_only``).
"""

from __future__ import annotations

from pathlib import Path

from .records import MultimodalDataset
from .registry import register_dataset
from .rows import Columns, carve_dev, class_folder_files, records_from_rows


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
) -> MultimodalDataset:
    """One split of an ImageFolder dataset; the classes are the sorted sub-folders of the training folder.

    Args:
        root: dataset folder: ``root/<split>/<class>/`` per split, or a flat ``root/<class>/``.
        split: a sub-folder of ``root`` (``train``, ``val``, ``test``...).
        train_split: the training folder; its sub-folders define the label set.
        dev_split: the held-out split; without a folder of its own it is carved from the training images
            (``dev_fraction`` of each class, seeded) and ``train_split`` then excludes those images.
        dev_fraction: fraction carved for ``dev_split`` (0 = never carve).
        seed: seed of the carve.
        on_error / check_images: see :func:`data.table.build_table`.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"image folder dataset: {base} does not exist")
    flat = not (base / train_split).is_dir()
    train_dir = base if flat else base / train_split
    names = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    carve = dev_fraction > 0 and (flat or not (base / dev_split).is_dir())
    if split in (train_split, dev_split) and carve:
        items = carve_dev(class_folder_files(train_dir), "train" if split == train_split else "dev", dev_fraction,
                          seed)
    elif not flat and (base / split).is_dir():
        items = class_folder_files(base / split)
    else:
        have = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise FileNotFoundError(f"image folder dataset: no split {split!r} in {base} (sub-folders: {have}); set "
                                f"data.params.dev_split={split} with dev_fraction > 0 to carve it from the training "
                                "images")
    if not items:
        raise FileNotFoundError(f"image folder dataset: no images for split {split!r} under {train_dir}/<class>/ "
                                "(expected class sub-folders of .png/.jpg files)")
    rows = ((str(path), 1, {"id": path.stem, "image": str(path), "label": label}) for label, path in items)
    cols = Columns(id="id", text=None, image="image", label="label")
    return records_from_rows(rows, cols, names, str(base.resolve()), on_error, check_images, multi_label=False)
