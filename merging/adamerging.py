"""AdaMerging (Yang et al. 2024): merge coefficients learned by minimising the entropy of the merged model's
predictions on unlabelled data, trained through the engine's loop as a :class:`~engine.tasks.Task`.

``merge.py`` with ``method: adamerging`` runs :func:`learn_coefficients` (a short :class:`engine.trainer.Trainer`
run of the ``adamerging`` task on the base's data settings, labels unused), then merges with the learned
coefficients through the ``adamerging`` merge method, tensor by tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.tasks import Task, TaskModel, register_task
from models import load_state
from models.folder import TASK_STATE, read_tensors, read_weights

from .checkpoints import Checkpoint, plan
from .recipe import Granularity


class Coefficients(nn.Module):
    """The learned ``lambda``: ``(K, G)`` for K models and G groups (1 task-wise, one per merged tensor
    layer-wise)."""

    def __init__(self, models: int, groups: int, init: float):
        super().__init__()
        self.value = nn.Parameter(torch.full((models, groups), float(init)))

    def forward(self) -> Tensor:
        return self.value.clamp(0.0, 1.0)  # the paper keeps coefficients in [0, 1]


def prediction_entropy(logits: Tensor, multi_label: bool = False) -> Tensor:
    """Mean Shannon entropy of the predictions, ``(B, C)`` logits in, scalar out (nats): of the softmax for one
    label per example, of each label's Bernoulli (averaged over labels) for multi-label models."""
    logits = logits.float()
    if multi_label:
        p = torch.sigmoid(logits)
        return -(p * nn.functional.logsigmoid(logits) + (1 - p) * nn.functional.logsigmoid(-logits)).mean()
    return -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1).mean()


@register_task("adamerging")
class AdaMergingTask(Task):
    """Entropy of ``model`` with weights ``base + sum_k lambda_k * tau_k``; only ``lambda`` trains.

    ``tau_k = theta_k - base`` are the task vectors of the fine-tuned models (held by the task, frozen, never
    saved); the model's own weights are frozen at the base. Labels in the batch are not used: the objective is the
    paper's unsupervised one (test-time adaptation on unlabelled examples). The merged model is run in eval mode
    (no dropout), as it will predict. Evaluations during training evaluate the merged model.

    Args:
        models: the fine-tuned run or model folders.
        base: the shared starting point (run or model folder).
        granularity: ``task`` (one lambda per model) or ``layer`` (one per model and tensor).
        init: starting lambda (the paper's 0.3).
        policies: merge policies (fnmatch pattern -> keep_base | skip | ...): tensors not merged keep the base.
        heads: multi-task merging (the paper's setting): every model keeps its own head (``head.*`` is not merged)
            and the unlabelled data is each model's own train split (from its run config), each example's entropy
            taken with its own model's head: ``sum_k H(head_k(f_merged(x_k)))``.
    """

    def __init__(self, models: list[str], base: str, granularity: str = "layer", init: float = 0.3,
                 policies: dict[str, str] | None = None, heads: bool = False):
        super().__init__()
        if not models:
            raise ValueError("adamerging: no models to merge")
        self.model_paths, self.base_path = [str(m) for m in models], str(base)
        self.granularity = Granularity(granularity).value
        self.init, self.policies, self.heads = init, dict(policies or {}), heads
        if heads:
            self.policies = {"head.*": "keep_base", **self.policies}
        self.head_states: list[dict[str, Tensor]] = []  # heads=True: each model's head, frozen
        self.names: list[str] = []
        self.base_tensors: dict[str, Tensor] = {}
        self.task_vectors: dict[str, Tensor] = {}  # name -> (K, *S)

    def setup(self, model: nn.Module) -> None:
        base, ckpts = Checkpoint.open(self.base_path), [Checkpoint.open(m) for m in self.model_paths]
        actions = plan(base, ckpts, self.policies)
        base_state = read_weights(base.model_dir)
        states = [read_weights(c.model_dir) for c in ckpts]
        self.names = [k for k, a in actions.items() if a == "merge" and base_state[k].is_floating_point()]
        self.base_tensors = {k: base_state[k].float() for k in self.names}
        self.task_vectors = {k: torch.stack([s[k].float() - self.base_tensors[k] for s in states])
                             for k in self.names}
        if self.heads:
            self.head_states = [{k.removeprefix("head."): v.float() for k, v in s.items() if k.startswith("head.")}
                                for s in states]
        groups = len(self.names) if self.granularity == "layer" else 1
        self.extras["coefficients"] = Coefficients(len(ckpts), groups, self.init)
        model.requires_grad_(False)

    def initialise(self, model: nn.Module) -> None:
        """Start from the base's weights (what the tensors not merged keep)."""
        load_state(model, read_weights(Checkpoint.open(self.base_path).model_dir), source=self.base_path)

    def place(self, device) -> None:
        self.base_tensors = {k: v.to(device) for k, v in self.base_tensors.items()}
        self.task_vectors = {k: v.to(device) for k, v in self.task_vectors.items()}
        self.head_states = [{k: v.to(device) for k, v in h.items()} for h in self.head_states]

    def train_dataset(self, cfg):
        """With ``heads``: every model's own train split (``cfg.data.train_split``), its rows tagged with the model's
        index as their ``lang`` (``task00``, ``task01``, ...), so a batch says which head reads each example."""
        if not self.heads:
            return None
        from data.records import MultimodalDataset
        from engine.builders import build_dataset

        from .scoring import run_config

        records, names = [], None
        for k, path in enumerate(self.model_paths):
            run_cfg, _ = run_config(path)
            dataset = build_dataset(run_cfg, cfg.data.train_split, run_cfg.data.languages)
            names = names or dataset.label_names
            records += [{**r, "lang": f"task{k:02d}"} for r in dataset.records]
        return MultimodalDataset(records, names)

    def merged(self, coefficients: Tensor) -> dict[str, Tensor]:
        """``{name: base + sum_k lambda[k, g(name)] * tau_k}`` for the merged tensors; ``coefficients`` ``(K, G)``."""
        out = {}
        for j, name in enumerate(self.names):
            lam = coefficients[:, j if coefficients.shape[1] > 1 else 0]
            tv = self.task_vectors[name]
            out[name] = self.base_tensors[name] + (lam.view(-1, *[1] * (tv.ndim - 1)) * tv).sum(0)
        return out

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        model.eval()  # the merged model as it will predict: no dropout
        out = functional_call(model, self.merged(self.extras["coefficients"]()), (batch,))
        multi = batch["labels"].ndim == 2
        if not self.heads:
            entropy = prediction_entropy(out["logits"], multi)
            return {"loss": entropy, "entropy": entropy.detach(), "outputs": out}
        task = batch["lang"]  # (B,) index of the model whose data each example is
        entropy = out["features"].new_zeros(())
        for k, head in enumerate(self.head_states):
            rows = task == k
            if rows.any():
                logits = functional_call(model.head, head, (out["features"][rows],))
                entropy = entropy + prediction_entropy(logits, multi) * rows.sum() / task.numel()
        return {"loss": entropy, "entropy": entropy.detach()}

    def evaluate(self, accelerator, model, loader, **kwargs) -> dict[str, Any]:
        """The merged model's metrics: its weights are put into the model for the evaluation, then restored."""
        inner = accelerator.unwrap_model(model)
        net = inner.model if isinstance(inner, TaskModel) else inner
        params = dict(net.named_parameters())
        saved = {k: params[k].detach().clone() for k in self.names}
        with torch.no_grad():
            for k, v in self.merged(self.extras["coefficients"]()).items():
                params[k].copy_(v)
        try:
            return super().evaluate(accelerator, model, loader, **kwargs)
        finally:
            with torch.no_grad():
                for k, v in saved.items():
                    params[k].copy_(v)

    def coefficient_table(self) -> dict[str, list[float]]:
        """The learned lambdas as the ``adamerging`` merge method takes them."""
        lam = self.extras["coefficients"]().detach().cpu()
        if lam.shape[1] == 1:
            return {"*": lam[:, 0].tolist()}
        return {name: lam[:, j].tolist() for j, name in enumerate(self.names)}


def learn_coefficients(models: list[str], base: str, settings: Any, policies: dict[str, str], work: Path,
                       overrides: list[str] = ()) -> dict[str, Any]:
    """Train the ``adamerging`` task for ``settings.steps`` steps on the base run's data settings (``settings.split``,
    labels unused) in a run folder under ``work``; returns ``{"coefficients": {...}, "entropy": [first, last]}``."""
    import json

    from engine.config import load_config
    from engine.trainer import Trainer

    from .scoring import run_config

    _, ckpt = run_config(base)
    params = {"models": [str(m) for m in models], "base": str(base), "granularity": str(settings.granularity),
              "init": float(settings.init), "policies": dict(policies), "heads": bool(settings.heads)}
    cfg = load_config(ckpt.run_dir / "config.yaml", [
        "train.task=adamerging", f"train.task_params={json.dumps(params)}", f"train.max_steps={settings.steps}",
        f"optim.lr={settings.lr}", "optim.weight_decay=0.0", "optim.warmup_ratio=0.0",
        "optim.clip_grad=0.0", f"data.train_split={settings.split}", "data.eval_split=''", "data.test_split=null",
        "train.init_from=null", "train.weight_averaging.name=none", f"run.output_dir={work}", "run.name=adamerging",
        "run.tracker=none", "run.progress_bar=false", "run.overwrite=false", "run.log_every=1",
        *([f"train.batch_size={settings.batch_size}"] if settings.batch_size else []), *overrides])
    trainer = Trainer(cfg)
    trainer.fit()
    logged = [json.loads(line) for line in (trainer.run.log_path).read_text().splitlines() if line.strip()]
    entropy = [r["train/entropy"] for r in logged if "train/entropy" in r]
    lam = read_tensors(trainer.run.path / "model" / TASK_STATE)["coefficients.value"].clamp(0, 1)
    task: AdaMergingTask = trainer.task
    table = {"*": lam[:, 0].tolist()} if lam.shape[1] == 1 else \
        {name: lam[:, j].tolist() for j, name in enumerate(task.names)}
    return {"coefficients": table, "entropy": [entropy[0], entropy[-1]] if entropy else []}
