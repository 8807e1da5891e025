"""Model folders on the HuggingFace Hub: resolve a repo through the local cache, describe a model in a model card,
upload a saved folder. Everything goes through ``huggingface_hub``, so the cache, offline mode
(``HF_HUB_OFFLINE=1``), tokens and endpoints behave exactly as they do for ``transformers`` and ``timm``.

A crossfuse model on the Hub is the folder ``save_pretrained`` writes (see :mod:`models.folder`) plus its card,
``README.md``: YAML metadata (``library_name: crossfuse``, tags, license, base towers, datasets, label names) and a
body with the towers, the labels, the run's metrics and the command that trained it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .errors import HubError, ModelNotAvailableError, looks_like_path
from .folder import CONFIG, WEIGHTS, read_info, resolve_model_dir

CARD = "README.md"
LIBRARY = "crossfuse"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_hub_id(name: str | Path) -> bool:
    """Whether ``name`` is meant as a Hub repo id (``org/name``) rather than a folder on this machine."""
    text = str(name)
    return bool(_REPO_ID.fullmatch(text)) and not looks_like_path(text)


def resolve_pretrained(path: str | Path, revision: str | None = None) -> Path:
    """The local model folder for ``path``: a folder on this machine (a model folder or a run folder holding
    ``model/``), or a Hub repo id resolved through the HuggingFace cache (downloaded when online and missing).

    ``revision``: a branch, tag or commit of the Hub repo (default ``main``); meaningless for a local folder.
    """
    if not is_hub_id(path):
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to a Hub repo id (org/name), not to the folder {path!r}")
        return resolve_model_dir(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RevisionNotFoundError

    where = f"{path}@{revision}" if revision else str(path)
    try:
        local = snapshot_download(str(path), revision=revision, library_name=LIBRARY)
    except RevisionNotFoundError as err:
        raise ModelNotAvailableError(f"Hub model {where!r}: the repo has no revision {revision!r}") from err
    except LocalEntryNotFoundError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE=1 is set and it is not in the local HuggingFace cache" if offline else \
            "it is not in the local HuggingFace cache and could not be fetched"
        raise ModelNotAvailableError(
            f"Hub model {where!r} could not be loaded: {why}. Fix: on a machine with internet run `hf download "
            f"{path}{' --revision ' + revision if revision else ''}` and copy ~/.cache/huggingface/hub here, or "
            f"pass a local model folder (there is no folder {str(path)!r} here)") from err
    except HfHubHTTPError as err:
        raise ModelNotAvailableError(f"Hub model {where!r} could not be fetched: {err}") from err
    local = Path(local)
    if not ((local / CONFIG).is_file() and (local / WEIGHTS).is_file()):
        raise ModelNotAvailableError(
            f"Hub repo {where!r} is not a crossfuse model: it has no {CONFIG} and {WEIGHTS} (push a folder written by "
            "save_pretrained, e.g. with `crossfuse push RUN org/name`)")
    return local


# ------------------------------------------------------------------------------------------------ model card
def _base_models(model_cfg: dict[str, Any]) -> list[str]:
    """The Hub repos the towers started from: only pretrained towers named by a Hub id."""
    bases = []
    text = model_cfg.get("text") or {}
    if text.get("pretrained", True) and text.get("name") and is_hub_id(text["name"]):
        bases.append(text["name"])
    vision = model_cfg.get("vision") or {}
    name = str(vision.get("name") or "")
    if vision.get("pretrained") and name:
        if name.startswith(("hf-hub:", "hf_hub:")):
            bases.append(name.split(":", 1)[1])
        else:
            try:
                from timm.models import get_pretrained_cfg
                repo = getattr(get_pretrained_cfg(name), "hf_hub_id", None)
            except (ImportError, RuntimeError, ValueError, KeyError):
                repo = None
            if repo:
                bases.append(repo)
    return bases


def _metrics_rows(metrics: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(split, metric, value) for every overall number of a run's ``metrics.json``."""
    rows = []
    for split, result in (metrics.get("results") or {}).items():
        for name, value in (result.get("overall") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                rows.append((split, name, float(value)))
    return rows


def model_card(directory: str | Path, *, metrics: dict[str, Any] | None = None, command: str | None = None,
               datasets: list[str] | None = None, license: str | None = None):
    """The :class:`huggingface_hub.ModelCard` of the model folder ``directory``.

    metrics: a run's ``metrics.json`` (its ``results`` become the metrics table).
    command: the command line that trained the model.
    datasets: dataset names for the metadata (the run's ``data.name``, or a Hub dataset id).
    license: an SPDX-style id (``apache-2.0``); ``other`` when not given, since a model's license follows its base
    towers and training data, which only its author knows.
    """
    from huggingface_hub import ModelCard, ModelCardData

    info = read_info(directory)
    model_cfg = info.get("model") or {}
    fusion = (model_cfg.get("fusion") or {}).get("name", "?")
    text = (model_cfg.get("text") or {}).get("name")
    vision = (model_cfg.get("vision") or {}).get("name")
    labels = list(info.get("label_names") or [])
    rows = _metrics_rows(metrics or {})
    data = ModelCardData(
        library_name=LIBRARY, license=license or "other", tags=[LIBRARY, "multimodal", f"fusion:{fusion}"],
        base_model=_base_models(model_cfg) or None, datasets=datasets or None,
        metrics=sorted({name for _, name, _ in rows}) or None, label_names=labels,
        multi_label=bool(info.get("multi_label")),
    )
    towers = [f"- text tower: `{text}`" if text else "- no text tower",
              f"- vision tower: `{vision}`" if vision else "- no vision tower",
              f"- fusion: `{fusion}`"]
    body = ["# crossfuse model", "", "A text-image model trained with crossfuse (`library_name: crossfuse`).", "",
            *towers, f"- labels ({len(labels)}{', multi-label' if info.get('multi_label') else ''}): "
            + ", ".join(f"`{name}`" for name in labels), "", "## Use", "", "```python",
            "from models import MultimodalModel", "", "model = MultimodalModel.from_pretrained(\"<this repo id>\")",
            "```", ""]
    if rows:
        body += ["## Results", "", "| split | metric | value |", "|---|---|---|",
                 *(f"| {split} | {name} | {value:.4f} |" for split, name, value in rows), ""]
    if command:
        body += ["## Training", "", "```bash", command, "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def write_model_card(directory: str | Path, **kwargs: Any) -> Path:
    """Write ``README.md`` into the model folder ``directory`` (atomically); ``kwargs`` as :func:`model_card`."""
    path = Path(directory) / CARD
    tmp = path.with_name(f".tmp-{CARD}")
    tmp.write_text(str(model_card(directory, **kwargs)), encoding="utf-8")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------ upload
RUN_FILES = ("config.yaml", "metrics.json")  # from a run folder, uploaded beside the model under run/


def push_to_hub(path: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None, license: str | None = None) -> str:
    """Upload a model folder (or a run folder's ``model/`` plus its ``config.yaml`` and ``metrics.json`` under
    ``run/``) to the Hub repo ``repo_id`` in one commit, creating the repo if needed. Returns the commit URL.

    A folder without a card is uploaded with one; ``license`` sets the uploaded card's license. The local folder
    is never changed.
    """
    import json

    from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if not is_hub_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repo id: expected org/name (or user/name)")
    directory = resolve_model_dir(path)
    run = Path(path) if directory != Path(path) else None
    if (directory / CARD).is_file():
        card = ModelCard.load(directory / CARD)
    else:
        metrics = None
        if run is not None and (run / "metrics.json").is_file():
            metrics = json.loads((run / "metrics.json").read_text())
        card = model_card(directory, metrics=metrics)
    if license is not None:
        card.data.license = license
    ops = [CommitOperationAdd(CARD, str(card).encode("utf-8"))]
    ops += [CommitOperationAdd(file.relative_to(directory).as_posix(), str(file))
            for file in sorted(directory.rglob("*"))
            if file.is_file() and file.relative_to(directory).as_posix() != CARD and not file.name.startswith(".tmp-")]
    if run is not None:
        ops += [CommitOperationAdd(f"run/{name}", str(run / name)) for name in RUN_FILES if (run / name).is_file()]
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(repo_id, ops, revision=revision, repo_type="model",
                                 commit_message=commit_message or f"Upload {directory.name} with crossfuse")
    except OfflineModeIsEnabled as err:
        raise HubError(f"cannot upload {directory} to {repo_id!r}: HF_HUB_OFFLINE=1 is set; unset it to push") from err
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        fix = (f"Fix: log in with `hf auth login` (or set HF_TOKEN) as an account with write access to "
               f"{repo_id.split('/')[0]!r}" if status in (401, 403) else "Check the repo id and try again")
        raise HubError(f"uploading {directory} to {repo_id!r} failed (HTTP {status}): "
                       f"{str(err).splitlines()[0]}. {fix}") from err
    return info.commit_url
