"""The contract between the training loop and what it optimises: a :class:`Task`.

A task is an ``nn.Module`` that turns ``(model, batch)`` into a loss dict, so one loop serves supervised training,
contrastive alignment and distillation alike (timm's ``timm/task/task.py`` is the model). It owns what it adds to
the model: trainable extras (projections, a temperature) in ``self.extras``, which are trained, synchronised across
processes, checkpointed and saved beside the model as ``task_state.safetensors``; and frozen modules (teachers), which
are never trained, wrapped or saved. Every hook the trainer calls has a default here, so the loop calls methods and
never asks a task what it can do.

The loop prepares one module, :class:`TaskModel` (the model and the task's extras), so DDP, DeepSpeed and FSDP see
exactly the parameters that train. Supervised classification is defined here; ``transfer`` and ``merging`` register
their tasks the same way (``@register_task("name")``) when imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor, nn

from crossfuse.registry import Registry

from .evaluation import evaluate, tune_and_save_thresholds
from .metrics import classification_metric_names

if TYPE_CHECKING:
    from accelerate import Accelerator
    from omegaconf import DictConfig

    from models import MultimodalModel


class Task(nn.Module):
    """Base class of every objective; subclasses implement :meth:`forward` and override the hooks they need.

    Class attributes:
        find_unused_parameters: True if the objective can leave trainable parameters without a gradient in a step
            (DDP must then search for them, which costs a graph traversal per step).
    """

    find_unused_parameters: bool = False
    task_name: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.extras = nn.ModuleDict()  # trainable additions: optimised, synchronised, checkpointed, saved

    def setup(self, model: MultimodalModel) -> None:
        """Called once, after the model is built and before anything is prepared (by evaluate.py too): create
        ``self.extras``, load frozen teachers, freeze parts of ``model`` the objective does not train. It must not
        change the model's weights (an evaluation would lose them): that is :meth:`initialise`. Default: nothing."""

    def initialise(self, model: MultimodalModel) -> None:
        """Called by the trainer after :meth:`setup`, before training (a resume then loads its checkpoint over it):
        set the model's starting weights when the objective dictates them. Default: keep what the config built."""

    def place(self, device) -> None:
        """Move what the task holds besides its extras (frozen teachers) to the training device; the extras move
        with the prepared model."""
        for name, child in self.named_children():
            if name != "extras":
                child.to(device)

    def train_dataset(self, cfg: DictConfig):
        """The rows this objective trains on, or None for the configured data's train split (the default)."""
        return None

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        """Returns ``{"loss": scalar, ...}``: the loss to minimise, other scalar tensors worth logging, and
        optionally ``outputs`` (the model's output dict)."""
        raise NotImplementedError

    def calibrate(self, accelerator: Accelerator, model: nn.Module, loader, model_dir: Path) -> Any:
        """After training, on the eval split: decision thresholds for the evaluation (per label for multi-label
        models, saved in ``model_dir``); default: the classification thresholds."""
        return tune_and_save_thresholds(accelerator, model, loader, model_dir)

    def metric_names(self, model: MultimodalModel) -> set[str]:
        """The metrics :meth:`evaluate` reports under ``overall``: ``train.best_metric`` is checked against them
        before training starts. Default: the classification metrics."""
        return classification_metric_names(model.multi_label)

    def evaluate(self, accelerator: Accelerator, model: nn.Module, loader, *, languages: list[str] = (),
                 reference_language: str | None = None, ablation: bool = False, threshold: Any = 0.5
                 ) -> dict[str, Any]:
        """Metrics of ``model`` on ``loader``: ``{"overall": {name: value}, ...}``; default: classification metrics
        overall, per language and with each modality masked (:func:`engine.evaluation.evaluate`)."""
        return evaluate(accelerator, model, loader, list(languages), ablation=ablation,
                        reference_language=reference_language, threshold=threshold)


class TaskModel(nn.Module):
    """The one module the loop prepares: the model and the task's trainable extras.

    In training mode a call returns the task's loss dict; in eval mode the model's outputs, so evaluation code is
    given this (prepared) module and, under FSDP, the root's hooks gather the weights it reads. The task itself is
    held without being registered as a submodule, so its frozen teachers stay out of DDP, ZeRO partitioning, FSDP
    sharding and the checkpoints.
    """

    def __init__(self, model: MultimodalModel, task: Task):
        super().__init__()
        self.model, self.extras = model, task.extras
        object.__setattr__(self, "task", task)

    def forward(self, batch: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
        if self.training:
            return self.task(self.model, batch)
        return self.model(batch, drop=drop)

    # What evaluation reads from a model, read through to it.
    @property
    def multi_label(self) -> bool:
        return self.model.multi_label

    @property
    def label_names(self) -> list[str]:
        return self.model.label_names

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.model.modalities

    @property
    def image_data_config(self) -> dict | None:
        return self.model.image_data_config


TASKS: Registry[type[Task]] = Registry(
    "task", signature=lambda cls: cls.__init__,
    hint=" (tasks defined in transfer/ and merging/ register when those packages are imported, as the crossfuse "
         "command and the entry scripts do)")


def register_task(name: str, renamed_from: tuple[str, ...] = ()):
    """Class decorator registering a :class:`Task` subclass under ``name``."""

    def wrap(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"{getattr(cls, '__name__', cls)} must subclass engine.tasks.Task")
        cls.task_name = name
        return TASKS.add(name, cls, renamed_from)

    return wrap


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.names(pattern)


def create_task(name: str, **params: Any) -> Task:
    """Build a registered task; options are checked against its constructor before anything is loaded."""
    try:
        TASKS.check_options(name, params)
    except TypeError as err:
        raise TypeError(f"bad train.task_params: {err}") from None
    return TASKS.get(name)(**params)


@register_task("classification")
class ClassificationTask(Task):
    """Cross-entropy for single-label targets ``(B,)``, BCE-with-logits for multi-hot targets ``(B, C)``.

    Args:
        label_smoothing: cross-entropy label smoothing.
        pos_weight: optional per-label positive weight for BCE (class imbalance in multi-label data).
    """

    def __init__(self, label_smoothing: float = 0.0, pos_weight: list[float] | None = None):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.pos_weight = pos_weight

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        return {"loss": classification_loss(out["logits"], batch["labels"], self.label_smoothing, self.pos_weight),
                "outputs": out}


def classification_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0,
                        pos_weight: list[float] | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy (labels ``(B,)``) or BCE-with-logits (multi-hot ``(B, C)``); ``reduction="none"``: ``(B,)``."""
    if labels.ndim == 2:
        weight = logits.new_tensor(pos_weight) if pos_weight is not None else None
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weight, reduction="none")
        return loss.mean() if reduction == "mean" else loss.mean(-1)
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction=reduction)
