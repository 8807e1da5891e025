"""The exported-folder format and the one loader every consumer uses.

An export folder holds ``export.json`` (``{"format": 1, "kind", "source", "files", "details"}``), the kind's weight
files, and what any crossfuse model folder holds besides weights: ``crossfuse.json``, ``text_config/``,
``tokenizer/`` and the run's ``config.yaml`` (so ``evaluate.py`` can rebuild the data pipeline from it).
:func:`load_for_inference` opens an export folder of any kind, a run folder or a ``save_pretrained`` folder and
returns a module whose ``forward(batch, drop=())`` gives ``{"logits": (B, C)}``, like :class:`MultimodalModel`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from engine.run_folder import new_folder
from models import MultimodalModel, resolve_model_dir
from models.errors import ModelNotAvailableError
from models.multimodal import CONFIG_NAME, WEIGHTS_NAME

from .registry import EXPORTS, get_export

MANIFEST_NAME = "export.json"
FORMAT_VERSION = 1


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The parsed ``export.json`` of ``directory``, or None when it is not an export folder."""
    path = Path(directory) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def resolve_folder(path: str | Path) -> Path:
    """The folder holding ``crossfuse.json`` and ``tokenizer/``: an export folder itself, or a run's ``model/``."""
    path = Path(path)
    if not path.exists():
        raise ModelNotAvailableError(
            f"{str(path)!r} does not exist: pass a run folder written by train.py, a folder written by "
            "save_pretrained, or a folder written by export.py")
    if read_manifest(path) is not None:
        return path
    return resolve_model_dir(path)


def model_info(directory: str | Path) -> dict[str, Any]:
    """``crossfuse.json`` of a model or export folder (labels, model config, image preprocessing)."""
    return json.loads((Path(directory) / CONFIG_NAME).read_text())


def load_for_inference(path: str | Path) -> nn.Module:
    """Load any model folder for inference, in eval mode.

    Args:
        path: a run folder, a ``save_pretrained`` folder, or an export folder (``int8``, ``pruned``, ``onnx``).

    Returns:
        A module with ``forward(batch, drop=()) -> {"logits": (B, C)}`` and the attributes ``label_names``,
        ``multi_label``, ``modalities`` and ``image_data_config`` of :class:`MultimodalModel`.
    """
    folder = resolve_folder(path)
    manifest = read_manifest(folder)
    if manifest is None:
        return MultimodalModel.from_pretrained(folder).eval()
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder / MANIFEST_NAME} has format {manifest.get('format')!r}; this version of crossfuse "
                         f"reads format {FORMAT_VERSION}: re-export the run with this version's export.py")
    return get_export(manifest["kind"]).load(folder, manifest).eval()


def write_export_folder(model: MultimodalModel, source: str | Path, out_dir: str | Path, kind: str,
                        overwrite: bool = False, **options: Any) -> Path:
    """Export ``model`` (loaded from run or model folder ``source``) as ``kind`` into ``out_dir``.

    The folder is written completely under a temporary name and then renamed into place (``overwrite`` replaces
    an earlier export the same way), so a failed export leaves nothing and a folder with ``export.json`` is always
    complete. ``out_dir`` may not be a run folder or the source model's folder.
    """
    EXPORTS.check_options(kind, options)
    model_dir = resolve_model_dir(source)
    with new_folder(out_dir, overwrite, protect=[model_dir], what="export") as tmp:
        details = get_export(kind).export(model, tmp, source=Path(source), **options)
        (tmp / CONFIG_NAME).write_text(json.dumps(model.config_dict(), indent=2))
        for item in model_dir.iterdir():  # tokenizer/, text_config/ and side files such as tuned thresholds
            if item.is_dir():
                shutil.copytree(item, tmp / item.name, dirs_exist_ok=True)
            elif item.name not in (WEIGHTS_NAME, CONFIG_NAME) and not (tmp / item.name).exists():
                shutil.copy(item, tmp / item.name)
        run_config = Path(source) / "config.yaml"
        if run_config.is_file():
            shutil.copy(run_config, tmp / "config.yaml")
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        manifest = {"format": FORMAT_VERSION, "kind": kind, "source": str(source), "files": files,
                    "details": details}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return Path(out_dir)
