"""The files of a saved model folder, named once.

A model folder (``save_pretrained``, a run's ``model/``, a merge's output) holds:

* ``model.safetensors`` — every tensor of the model (never pickled);
* ``crossfuse.json`` — the model config, labels and image preprocessing (:meth:`MultimodalModel.config_dict`);
* ``text_config/`` — the text tower's HuggingFace config, so the tower is rebuilt without a download;
* ``tokenizer/`` — the tokenizer the model was trained with;
* ``thresholds.json`` — per-label decision thresholds of a multi-label model, tuned on the eval split;
* ``task_state.safetensors`` — the trainable extras of the task that trained it (e.g. alignment projections).

Export folders (``deploy/``) add ``export.json`` and their own weight files; run folders hold a model folder as
``model/`` beside ``config.yaml``. Everything that reads or writes one of these files goes through this module, so
``evaluate.py`` and ``predict.py`` cannot disagree about them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import ModelNotAvailableError

WEIGHTS = "model.safetensors"
CONFIG = "crossfuse.json"
TEXT_CONFIG = "text_config"
TOKENIZER = "tokenizer"
THRESHOLDS = "thresholds.json"
TASK_STATE = "task_state.safetensors"


PICKLED_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.bin")  # what other tools save; never read


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder of ``path``: ``path`` itself or its ``model/`` subfolder (a run folder).

    Raises:
        ModelNotAvailableError: naming what is wrong with ``path`` (missing, a pickled ``pytorch_model.bin``
            only, no ``crossfuse.json``) and the fix.
    """
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG).is_file() and (candidate / WEIGHTS).is_file():
            return candidate
    if not path.exists():
        raise ModelNotAvailableError(f"{str(path)!r} is not a saved crossfuse model: it does not exist "
                                     f"({path.absolute()}); give a run folder written by train.py or a model folder "
                                     "written by save_pretrained")
    for candidate in (path, path / "model"):
        pickled = [name for name in PICKLED_WEIGHTS if (candidate / name).is_file()]
        if pickled and not (candidate / WEIGHTS).is_file():
            raise ModelNotAvailableError(
                f"{candidate / pickled[0]} is a pickled state dict, which crossfuse never unpickles (loading a pickle "
                f"can run any code); {candidate} has no {WEIGHTS}. Fix: in an environment you trust, load it and "
                f"write {WEIGHTS} with safetensors.torch.save_file (and {CONFIG} with MultimodalModel.save_pretrained)")
    raise ModelNotAvailableError(
        f"{str(path)!r} is not a saved crossfuse model: expected {CONFIG} and {WEIGHTS} in it or in its model/ "
        "subfolder (a run folder written by train.py, or a directory written by save_pretrained)")


def unreadable(path: str | Path, err: Exception) -> ModelNotAvailableError:
    """The error for a safetensors file that cannot be read: a pickle under that name, a truncated copy, ..."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save writes a zip archive (new) or a raw pickle (old)
        what = "is a pickle (torch.save) named .safetensors, which crossfuse never unpickles"
        fix = "re-save the model with save_pretrained (or safetensors.torch.save_file) where you trust the pickle"
    else:
        what = f"cannot be read as safetensors ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        fix = "the file is truncated or damaged: copy it again from the run that wrote it, or re-save the model"
    return ModelNotAvailableError(f"{path} {what}; {fix}")


def read_tensors(path: str | Path) -> dict:
    """Every tensor of a safetensors file; a damaged or foreign file is an error naming it."""
    from safetensors import SafetensorError

    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailableError(f"{path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise unreadable(path, err) from None


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of every tensor of a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise unreadable(path, err) from None


def read_tensor(path: str | Path, key: str):
    """One tensor of a safetensors file, opened for this read only (a handle kept open keeps every page it has read
    mapped and counted as resident, which would bring all N models of a merge back into memory)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(key)
    except (SafetensorError, OSError) as err:
        raise unreadable(path, err) from None


def read_weights(directory: str | Path) -> dict:
    """The ``model.safetensors`` tensors of a model folder."""
    return read_tensors(Path(directory) / WEIGHTS)


def read_info(directory: str | Path) -> dict[str, Any]:
    """The parsed ``crossfuse.json`` of a model or export folder."""
    path = Path(directory) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelNotAvailableError(f"{path} does not exist: {directory} is not a saved crossfuse model") from None
    except json.JSONDecodeError as err:
        raise ModelNotAvailableError(f"{path} is not valid JSON ({err}); the file was edited or truncated: restore "
                                     "it from the run that wrote it") from None


def load_tokenizer(directory: str | Path):
    """The tokenizer saved in the folder, or None when the model has none (no text tower)."""
    source = Path(directory) / TOKENIZER
    if not source.is_dir():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def save_thresholds(directory: str | Path, label_names: list[str], thresholds: np.ndarray) -> Path:
    path = Path(directory) / THRESHOLDS
    path.write_text(json.dumps(dict(zip(label_names, np.asarray(thresholds).tolist())), indent=1))
    return path


def load_thresholds(directory: str | Path, label_names: list[str]) -> float | np.ndarray:
    """The per-label thresholds saved with the model (in label order), or 0.5 when none were saved."""
    path = Path(directory) / THRESHOLDS
    if not path.is_file():
        return 0.5
    saved = json.loads(path.read_text())
    return np.array([saved.get(name, 0.5) for name in label_names])


def save_task_state(module: nn.Module, directory: str | Path) -> None:
    """Write a task's trainable extras beside the model."""
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
              str(Path(directory) / TASK_STATE), metadata={"format": "pt"})


def load_task_state(module: nn.Module, directory: str | Path) -> None:
    path = Path(directory) / TASK_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the model in {directory} was not saved by a task with its own "
                                "trainable module (e.g. train.task=contrastive)")
    module.load_state_dict(read_tensors(path))
