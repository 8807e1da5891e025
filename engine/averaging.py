"""Weight averaging during training: an exponential moving average (EMA, Polyak & Juditsky 1992; as used by
e.g. Tarvainen & Valpola 2017) or stochastic weight averaging (SWA, Izmailov et al. 2018) of the model.

Selected by ``train.weight_averaging.name`` (none | ema | swa). The trainer calls :meth:`WeightAverager.update`
after every optimizer step; the averaged model is evaluated at the end and saved as ``<run>/model_ema/`` or
``<run>/model_swa/`` in ``save_pretrained`` format, and its state is part of every checkpoint (as safetensors, so
``--resume`` continues the same average without unpickling anything).

Written here rather than on ``torch.optim.swa_utils.AveragedModel``: that class tests its update count on the
device at every update (a host synchronisation per step) and checkpoints through pickle.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class WeightAverager:
    """An averaged copy of a model's floating-point parameters, updated every ``every`` optimizer steps from
    ``start_step`` on.

    Only parameters are averaged: buffers (integer position/type ids, and BatchNorm statistics) are copied from the
    model when the average is saved; the towers of the embedded benchmark use LayerNorm, so there are no BatchNorm
    statistics to recompute after SWA (for a CNN tower, recompute them with a pass over the training data).

    Args:
        model: the (unwrapped) model being trained; it is deep-copied once.
        name: ``ema`` (``avg = decay * avg + (1 - decay) * theta``) or ``swa`` (equal-weight mean of the snapshots).
        decay: EMA decay per update.
        start_step: first optimizer step that contributes (SWA is usually started late in training).
        every: update period in optimizer steps.
    """

    def __init__(self, model: nn.Module, name: str = "ema", decay: float = 0.999, start_step: int = 0,
                 every: int = 1):
        if name not in ("ema", "swa"):
            raise ValueError(f"weight averaging {name!r} is unknown; choose ema or swa (or none to turn it off)")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.weight_averaging.decay must be in (0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"train.weight_averaging.every must be >= 1, got {every}")
        self.name, self.decay, self.start_step, self.every = name, decay, start_step, every
        self.module = copy.deepcopy(model).requires_grad_(False).eval()
        self.num_updates = 0  # counted on the host: no device read to decide how to update

    @property
    def folder(self) -> str:
        return f"model_{self.name}"

    def _pairs(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        own = dict(self.module.named_parameters())
        pairs = [(own[k], p.detach()) for k, p in model.named_parameters() if p.is_floating_point()]
        return [a for a, _ in pairs], [p for _, p in pairs]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> bool:
        """Fold the current weights in if ``step`` is due; returns whether it was."""
        if step < self.start_step or (step - self.start_step) % self.every:
            return False
        averaged, current = self._pairs(model)
        if self.num_updates == 0:
            for a, c in zip(averaged, current):
                a.copy_(c)
        else:  # EMA: avg += (1 - decay) (theta - avg); SWA: the running mean, weight 1 / (n + 1)
            weight = 1.0 - self.decay if self.name == "ema" else 1.0 / (self.num_updates + 1)
            torch._foreach_lerp_(averaged, current, weight)  # one fused kernel per group, as swa_utils' EMA uses
        self.num_updates += 1
        return True

    def finalise(self, model: nn.Module) -> nn.Module:
        """The averaged model, with the trained model's buffers (ids, normalisation statistics) copied in."""
        own = dict(self.module.named_buffers())
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in own:
                    own[name].copy_(buf)
        return self.module

    def state_dict(self) -> dict[str, Tensor]:
        """Every averaged parameter and the update count, as tensors (written as safetensors in checkpoints)."""
        state = {k: v.detach() for k, v in self.module.named_parameters()}
        state["__num_updates__"] = torch.tensor(self.num_updates)
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        state = dict(state)
        self.num_updates = int(state.pop("__num_updates__"))
        own = dict(self.module.named_parameters())
        missing = sorted(set(own) - set(state))
        if missing:
            raise KeyError(f"the saved {self.name} state lacks {len(missing)} tensors, e.g. {missing[0]}: it was "
                           "saved for another architecture")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)
