"""Merge saved checkpoints tensor by tensor, streaming from safetensors, and write a normal model folder.

Memory: each tensor is read with ``safetensors.safe_open`` (memory-mapped) one name at a time, so merging N
checkpoints holds the merged model plus one tensor per model, never N models.
"""

from __future__ import annotations

import fnmatch
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor

from engine.run_folder import new_folder
from models.errors import CheckpointMismatchError
from models.folder import WEIGHTS, read_info, read_tensor, resolve_model_dir, tensor_shapes

from .recipe import Policy
from .registry import MergeMethod, check_params, get_merge_method

POLICIES = tuple(p.value for p in Policy)  # what a per-key policy can do with the tensors its pattern matches


class MergeMismatchError(CheckpointMismatchError):
    """Checkpoints that cannot be merged tensor by tensor; the message lists the tensors and the fix."""


@dataclass
class Checkpoint:
    """One saved model: its folder, its ``crossfuse.json``, and the name/shape/dtype of each tensor."""

    model_dir: Path
    info: dict[str, Any]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path) -> Checkpoint:
        """Read the folder's config and tensor header (no tensor); a missing, foreign or damaged folder is a
        :class:`~models.ModelNotAvailableError` naming the file and the fix."""
        model_dir = resolve_model_dir(path)
        return cls(model_dir, read_info(model_dir), tensor_shapes(model_dir / WEIGHTS))

    @property
    def weights(self) -> Path:
        return self.model_dir / WEIGHTS

    @property
    def folders(self) -> list[Path]:
        """What a merge must never write into: the model folder and the run around it."""
        return [self.model_dir] + ([self.run_dir] if self.run_dir is not None else [])

    @property
    def run_dir(self) -> Path | None:
        """The run folder holding this model (where ``config.yaml`` is), if any."""
        for d in (self.model_dir, self.model_dir.parent):
            if (d / "config.yaml").is_file():
                return d
        return None


def policy_for(key: str, policies: dict[str, str]) -> str:
    """The policy of the first pattern (fnmatch, in the order given) matching ``key``; ``merge`` otherwise."""
    for pattern, policy in policies.items():
        if fnmatch.fnmatchcase(key, pattern):
            return policy
    return "merge"


def check_policies(policies: dict[str, str]) -> None:
    for pattern, policy in policies.items():
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r} for tensors {pattern!r} is unknown; "
                             f"choose one of {', '.join(POLICIES)}")


# Settings of the saved model config that change how a model was trained, not what its weights compute.
TRAINING_ONLY = {"text.pretrained", "text.freeze", "text.unfreeze_last_n", "text.gradient_checkpointing",
                 "vision.pretrained", "vision.checkpoint", "vision.freeze", "vision.gradient_checkpointing",
                 "vision.channels_last", "fusion.dropout", "head.dropout", "modality_dropout"}
# The tensors each part of the saved config describes (image preprocessing belongs to the vision tower).
CONFIG_PARTS = {"text": "text.", "vision": "vision.", "fusion": "fusion.", "head": "head."}
_MISSING = object()


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out  # an empty mapping is the same as none
    return {prefix: value}


def config_differences(reference: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, other's value, reference's value)`` for every setting of two ``crossfuse.json`` that differs,
    in the reference's order, training-only settings (dropout, freezing, where the start weights came from) aside.

    Keys: ``model.<part>.<...>`` (towers, fusion method and options, head), ``image_overrides.*`` and
    ``image_data_config.*`` (preprocessing), ``label_names``, ``multi_label``, ``num_outputs``.
    """
    a = _flatten({k: reference.get(k) for k in ("model", "image_overrides", "image_data_config")}, "")
    b = _flatten({k: other.get(k) for k in ("model", "image_overrides", "image_data_config")}, "")
    for key in ("num_outputs", "label_names", "multi_label"):
        a[key], b[key] = reference.get(key), other.get(key)
    diffs = []
    for key in list(a) + [k for k in b if k not in a]:
        bare = key.removeprefix("model.")
        if any(bare == t or bare.startswith(t + ".") for t in TRAINING_ONLY):
            continue
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            diffs.append((key, b.get(key, _MISSING), a.get(key, _MISSING)))
    return diffs


def _show(value: Any) -> str:
    return "(missing)" if value is _MISSING else repr(value)


LABEL_KEYS = ("num_outputs", "label_names", "multi_label")


def _describes(key: str) -> str | None:
    """The name prefix of the tensors a config key describes: ``""`` all of them, None the labels (compared
    against the output layer on their own)."""
    if key in LABEL_KEYS:
        return None
    if key.startswith("image_"):
        return "vision."
    return CONFIG_PARTS.get(key.split(".")[1], "") if key.startswith("model.") else ""


def plan(reference: Checkpoint, models: list[Checkpoint], policies: dict[str, str]) -> dict[str, str]:
    """Decide, for every tensor of ``reference``, which policy applies, after checking that the checkpoints match.

    Raises:
        MergeMismatchError: listing every tensor that is missing, extra or differently shaped under the ``merge``
            policy, any difference in label set, and, per model, the first difference of its saved model config
            (towers, fusion method and options, head, preprocessing; :func:`config_differences`) in a part whose
            tensors are merged, with the policies that would allow it.
    """
    check_policies(policies)
    problems: list[str] = []
    # The output layer is the head, or the fusion module itself for methods that produce logits (late fusion).
    out_keys = [k for k in reference.shapes if k.startswith("head.")] or \
        [k for k in reference.shapes if k.startswith("fusion.")]
    first_difference = ""
    merged_names = [k for k in reference.shapes if policy_for(k, policies) != "keep_base"
                    and policy_for(k, policies) != "skip"]
    for m in models:
        same = (m.info.get("label_names"), m.info.get("multi_label")) == \
            (reference.info.get("label_names"), reference.info.get("multi_label"))
        if not same and any(policy_for(k, policies) == "merge" for k in out_keys):
            problems.append(f"  labels:     {m.model_dir} has labels {m.info.get('label_names')}, the reference "
                            f"{reference.model_dir} has {reference.info.get('label_names')}")
        # Same tensor names and shapes do not make the same model (product and sum fusion share every tensor):
        # a difference in the saved config matters wherever the tensors it describes are merged.
        for key, theirs, ours in config_differences(reference.info, m.info):
            prefix = _describes(key)
            if prefix is not None and any(k.startswith(prefix) for k in merged_names):
                difference = f"{key}: {_show(theirs)} in {m.model_dir} vs {_show(ours)} in the reference " \
                             f"{reference.model_dir}"
                first_difference = first_difference or difference
                problems.append(f"  config:     {difference}")
                break  # the first difference per model; the others usually follow from it
    actions: dict[str, str] = {}
    for key, shape in reference.shapes.items():
        policy = policy_for(key, policies)
        actions[key] = policy
        if policy != "merge":
            continue
        for m in models:
            if key not in m.shapes:
                problems.append(f"  missing:    {key} not in {m.model_dir}")
            elif m.shapes[key] != shape:
                problems.append(f"  shape:      {key} {m.shapes[key]} in {m.model_dir} vs {shape} in the reference")
    for m in models:
        for key in sorted(set(m.shapes) - set(reference.shapes)):
            if policy_for(key, policies) == "merge":
                problems.append(f"  unexpected: {key} in {m.model_dir} is not in the reference {reference.model_dir}")
    if problems:
        first = f"the models were saved with different configs; first difference: {first_difference}\n" \
            if first_difference else ""
        raise MergeMismatchError(
            first + "the checkpoints do not match:\n" + "\n".join(problems) + "\nMerge models of the same "
            "architecture, fusion and label set, or give per-key policies (fnmatch pattern -> keep_base | skip | "
            "shape_match), e.g. policies: {'head.*': keep_base}")
    return actions


def merge_checkpoints(models: list[str | Path], method: str | MergeMethod, base: str | Path | None = None,
                      params: dict[str, Any] | None = None, policies: dict[str, str] | None = None,
                      fishers: list[str | Path] | None = None, grams: list[str | Path] | None = None
                      ) -> dict[str, Tensor]:
    """Merge saved models with a registered method, one tensor name at a time.

    Args:
        models: saved model folders or run folders (holding ``model/``).
        method: a registered merge method name (``list_merge_methods()``) or the method itself.
        base: the shared starting point, required by task-vector methods (task_arithmetic, ties, dare). It is the
            reference whose tensor names, dtypes and non-merged tensors the result takes; without it, the first
            model is.
        params: the method's keyword arguments (its config).
        policies: ``{fnmatch pattern: merge | keep_base | skip | shape_match}``; first match wins, default merge.
            ``keep_base`` copies the reference tensor, ``skip`` leaves the tensor out of the result, ``shape_match``
            merges over the models whose tensor exists with the reference's shape.
        fishers: one safetensors file of diagonal Fisher values per model (the ``fisher`` method).
        grams: one safetensors file per model of input Gram matrices, named like the linear weights they belong to
            (the ``regmean`` method; :func:`merging.activations.collect_grams`).

    Returns:
        The merged state dict (name -> tensor in the reference's dtype). Integer and bool tensors (buffers such as
        position ids) are never averaged: they are copied from the reference.
    """
    method = get_merge_method(method) if isinstance(method, str) else method
    params = dict(params or {})
    policies = dict(policies or {})
    check_params(method, params)
    if method.needs_base and base is None:
        raise ValueError(f"merge method {method.name!r} needs a base model (the shared starting point the models "
                         "were fine-tuned from): set base")
    if method.num_models is not None and len(models) != method.num_models:
        raise ValueError(f"merge method {method.name!r} merges exactly {method.num_models} models, got {len(models)}")
    if method.needs_fisher and (fishers is None or len(fishers) != len(models)):
        raise ValueError(f"merge method {method.name!r} needs one Fisher file per model "
                         "(merging.fisher_estimation.estimate_fisher)")
    if method.needs_grams and (grams is None or len(grams) != len(models)):
        raise ValueError(f"merge method {method.name!r} needs one file of input Gram matrices per model "
                         "(merging.activations.collect_grams; merge.py collects them from each run's data)")
    if not models:
        raise ValueError("nothing to merge: give at least one model")
    ckpts = [Checkpoint.open(m) for m in models]
    base_ckpt = Checkpoint.open(base) if base is not None else None
    reference = base_ckpt or ckpts[0]
    actions = plan(reference, ckpts, policies)
    merged: dict[str, Tensor] = {}
    fisher_keys = [set(tensor_shapes(f)) for f in fishers or []]
    gram_keys = [set(tensor_shapes(g)) for g in grams or []]
    for key, action in actions.items():
        if action == "skip":
            continue
        ref = read_tensor(reference.weights, key)
        if action == "keep_base" or not (ref.is_floating_point() or ref.is_complex()):
            merged[key] = ref
            continue
        use = [i for i, c in enumerate(ckpts) if c.shapes.get(key) == tuple(ref.shape)]
        if not use:  # shape_match with no matching model: nothing to merge
            merged[key] = ref
            continue
        kwargs = dict(params)
        if len(use) != len(ckpts) and "weights" in kwargs and kwargs["weights"] is not None:
            kwargs["weights"] = [kwargs["weights"][i] for i in use]
        if method.needs_base:
            kwargs["base"] = ref
        if method.needs_fisher:
            # Tensors without a Fisher (floating buffers) get equal Fishers, i.e. a plain average.
            kwargs["fishers"] = [read_tensor(fishers[i], key) if key in fisher_keys[i] else torch.ones(ref.shape)
                                 for i in use]
        if method.needs_grams:  # a linear weight every model has a Gram for; anything else is averaged
            has = all(key in gram_keys[i] for i in use)
            kwargs["grams"] = [read_tensor(grams[i], key) for i in use] if has else None
        if method.takes_key:
            kwargs["key"] = key
        out = method.fn([read_tensor(ckpts[i].weights, key) for i in use], **kwargs)
        merged[key] = out.to(ref.dtype).contiguous()
    return merged


def save_merged(state: dict[str, Tensor], reference: str | Path, out_dir: str | Path,
                recipe: dict[str, Any] | None = None, overwrite: bool = False,
                protect: Iterable[str | Path] = ()) -> Path:
    """Write a merged state dict as a run folder that ``evaluate.py`` and ``MultimodalModel.from_pretrained`` read.

    ``out_dir/model/`` gets the reference model's ``crossfuse.json``, ``text_config/`` and ``tokenizer/`` with the
    merged ``model.safetensors``; ``out_dir/config.yaml`` is the reference run's config (its data and evaluation
    settings); ``out_dir/merge.yaml`` records the recipe.

    The folder is written completely under a temporary name, then renamed into place
    (:func:`engine.run_folder.new_folder`): an existing ``out_dir`` is an error unless ``overwrite`` (then it is
    replaced in one rename), a training run is never replaced, and ``out_dir`` may be neither inside nor around the
    reference or any of ``protect`` (the other inputs). A failure leaves nothing behind.
    """
    ref = Checkpoint.open(reference)
    with new_folder(out_dir, overwrite, protect=[*ref.folders, *protect], what="merge output") as tmp:
        model_dir = tmp / "model"
        shutil.copytree(ref.model_dir, model_dir, ignore=shutil.ignore_patterns(WEIGHTS, "fisher*.safetensors",
                                                                               ".lock"))
        save_file({k: v.contiguous() for k, v in state.items()}, str(model_dir / WEIGHTS), metadata={"format": "pt"})
        if ref.run_dir is not None:
            shutil.copyfile(ref.run_dir / "config.yaml", tmp / "config.yaml")
        if recipe is not None:
            (tmp / "merge.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return Path(out_dir)
