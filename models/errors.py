"""Errors a user can cause when building or loading models, and the hints that say how to fix each one.

A hint is right for its source: a HuggingFace text model or tokenizer (a Hub name or a local folder), a timm model
(whose weights live in a ``timm/<name>.<tag>`` Hub repo, or in a local checkpoint file), or a local file.
"""

from __future__ import annotations

import os
from pathlib import Path


class ModelNotAvailableError(OSError):
    """A pretrained model or checkpoint named in the config cannot be loaded on this machine."""


class HubError(OSError):
    """The HuggingFace Hub refused a request (no token, no write access, no such repo)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not match the model they are loaded into."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _why(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"Original error: {type(err).__name__}: {text}"


def _unreachable() -> str:
    if _offline():
        return "HF_HUB_OFFLINE=1 is set and it is not in the local HuggingFace cache"
    return ("it is not in the local HuggingFace cache and could not be fetched from the Hub (no network, or no such "
            "repo)")


def looks_like_path(name: str) -> bool:
    """Whether a model name is meant as a local path rather than a Hub name (``org/model``)."""
    return (name.startswith(("/", "./", "../", "~", "\\")) or os.path.isabs(name) or name.count("/") > 1
            or Path(name).exists() or (("/" in name or os.sep in name) and Path(name).parent.is_dir()))


def hf_model_hint(kind: str, name: str, err: Exception, key: str = "model.text.name") -> ModelNotAvailableError:
    """The error for a HuggingFace model, tokenizer or config that cannot be loaded, by the kind of name it is."""
    path = Path(name).expanduser()
    if looks_like_path(name) and not path.exists():
        return ModelNotAvailableError(
            f"{kind}: {key} {name!r} is not a folder on this machine ({path.resolve()} does not exist). Fix: set {key} "
            f"to a folder written by save_pretrained, or to a HuggingFace Hub name. {_why(err)}")
    if path.is_dir():
        return ModelNotAvailableError(
            f"{kind}: {key} {name!r} is a folder but not a loadable {kind} (save_pretrained writes config.json, the "
            f"weights and the tokenizer files into it). {_why(err)}")
    return ModelNotAvailableError(
        f"{kind} {name!r} ({key}) could not be loaded: {_unreachable()}. Fix: on a machine with internet run "
        f"`hf download {name}` and copy ~/.cache/huggingface/hub to this machine, or save it with "
        f"save_pretrained and set {key}=<that local directory>. {_why(err)}")


def timm_model_hint(name: str, err: Exception) -> ModelNotAvailableError:
    """The error for timm pretrained weights that cannot be loaded: the Hub repo timm reads them from, the local
    checkpoint option, or no pretrained weights at all."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except (RuntimeError, ValueError, KeyError):
        cfg = None
    repo = getattr(cfg, "hf_hub_id", None)
    what = ", model.vision.pretrained=true: its timm weights"
    if name.startswith(("hf-hub:", "hf_hub:")):
        repo = name.split(":", 1)[1].split("@")[0]
        what = ": a timm model whose config and weights live in that Hub repo"
    url = getattr(cfg, "url", None)
    if repo:
        download = f"run `hf download {repo}` (the Hub repo timm reads {name!r} from) and copy " \
                   "~/.cache/huggingface/hub to this machine"
    elif url:
        download = f"download {url} and set model.vision.checkpoint to that file"
    else:
        download = f"find weights for {name!r} (timm lists no pretrained source for it)"
    return ModelNotAvailableError(
        f"vision encoder {name!r} (model.vision.name{what}) could not be "
        f"loaded: {_unreachable()}. Fix: on a machine with internet {download}; or copy a weights file here and set "
        "model.vision.pretrained=false model.vision.checkpoint=/path/to/weights.safetensors; or set "
        f"model.vision.pretrained=false to start from random weights. {_why(err)}")


def missing_file_hint(path: str | Path, key: str) -> ModelNotAvailableError:
    """The error for a local weights file named in the config that is not there."""
    path = Path(path)
    where = "" if path.parent.is_dir() else f"; its folder {path.parent} does not exist either"
    return ModelNotAvailableError(f"{key} {str(path)!r} ({path.resolve()}) does not exist{where}: set {key} to a "
                                  ".safetensors (or torch state-dict) file on this machine")
