"""Start a new task from a saved run: load its encoders and fusion, re-initialise the head, report every tensor.

``train.init_from=runs/old`` builds the model the new config describes, then copies in every tensor of the saved
model whose name and shape match. The head always starts fresh (a new task has a new label set). A tensor whose
shape differs is an error unless a ``train.init_skip`` pattern (``fnmatch`` syntax, e.g. ``fusion.classifier.*``)
names it; nothing is ever dropped silently.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import Tensor, nn

from models import MultimodalModel, resolve_pretrained
from models.errors import CheckpointMismatchError
from models.folder import read_weights

from .builders import build_model

HEAD_PATTERNS = ("head.*",)  # re-initialised for every new task


@dataclass
class InitReport:
    """What ``load_matching`` did with each tensor name.

    ``loaded``: copied from the checkpoint. ``skipped``: in the checkpoint but left at the new model's init
    (the head, or named by ``init_skip``). ``new``: not in the checkpoint, newly initialised. ``unused``: in the
    checkpoint but not in the new model (e.g. the vision tower of a text-only model).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"init_from {self.source}: {len(self.loaded)} tensors loaded, {len(self.skipped)} skipped, "
                f"{len(self.new)} newly initialised, {len(self.unused)} unused")

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "loaded": self.loaded, "skipped": self.skipped, "new": self.new,
                "unused": self.unused}


def _matches(name: str, patterns: list[str] | tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def load_matching(model: nn.Module, state: dict[str, Tensor], skip: list[str] | tuple[str, ...] = (),
                  source: str = "checkpoint") -> InitReport:
    """Copy the tensors of ``state`` into ``model`` by name; the rest keep their fresh initialisation.

    Args:
        model: the freshly built model.
        state: the saved tensors (name -> tensor).
        skip: ``fnmatch`` patterns of tensors not to load (also how a shape mismatch is accepted).
        source: named in the report and in errors.

    Raises:
        CheckpointMismatchError: a tensor present in both has another shape and no ``skip`` pattern names it.
    """
    own = model.state_dict()
    report = InitReport(source)
    mismatched, mismatched_names = [], []
    for name, tensor in own.items():
        if name not in state:
            report.new.append(name)
        elif _matches(name, skip):
            report.skipped.append(name)
        elif state[name].shape != tensor.shape:
            mismatched.append(f"  {name}: saved {tuple(state[name].shape)} vs new model {tuple(tensor.shape)}")
            mismatched_names.append(name)
        else:
            report.loaded.append(name)
    if mismatched:
        suggest = ",".join(sorted({n.split(".")[0] + ".*" for n in mismatched_names}))
        raise CheckpointMismatchError(
            f"{source}: {len(mismatched)} tensors have another shape in the new model:\n" + "\n".join(mismatched)
            + f"\nname them in train.init_skip (fnmatch patterns, e.g. train.init_skip=[{suggest}]) to keep them "
            "freshly initialised, or change the model config to match the saved run")
    report.unused = sorted(set(state) - set(own))
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report


def init_from_run(cfg: DictConfig, path: str | Path, num_outputs: int, label_names: list[str], multi_label: bool,
                  tokenizer: Any) -> tuple[MultimodalModel, InitReport]:
    """Build the model ``cfg`` describes for a new label set and initialise it from a saved run.

    Encoders and fusion come from the saved model wherever names and shapes match; ``head.*`` and anything named by
    ``cfg.train.init_skip`` keep their fresh initialisation. Returns the model and the report of every tensor
    (loaded, skipped, new or unused), which the trainer writes to the run folder as ``init_report.json``.

    Args:
        cfg: the new run's config; its ``model`` section decides the architecture.
        path: a run folder (holding ``model/``), a model directory written by ``save_pretrained``, or a Hub repo id
            (``org/name``, through the local HuggingFace cache).
        num_outputs, label_names, multi_label: the new task's outputs.
        tokenizer: the new run's tokenizer (the saved model's own when it has one; see ``build_tokenizer``).
    """
    directory = resolve_pretrained(path)
    model = build_model(cfg, num_outputs, label_names, multi_label, tokenizer)
    state = read_weights(directory)
    report = load_matching(model, state, list(HEAD_PATTERNS) + list(cfg.train.init_skip), source=str(directory))
    if not report.loaded:
        raise CheckpointMismatchError(
            f"{directory}: no tensor of the saved model matches the new model by name and shape; check that "
            "model.text / model.vision / model.fusion describe the saved run's architecture")
    return model, report


def start_model(cfg: DictConfig, dataset, tokenizer: Any) -> tuple[MultimodalModel, InitReport | None]:
    """The model a run starts from: the one ``cfg`` describes for ``dataset``'s outputs, fresh or, with
    ``train.init_from``, initialised from a saved run (then with the report of what was loaded)."""
    names, multi = dataset.label_names, dataset.multi_label
    if cfg.train.init_from:
        return init_from_run(cfg, cfg.train.init_from, len(names), names, multi, tokenizer)
    return build_model(cfg, len(names), names, multi, tokenizer), None
