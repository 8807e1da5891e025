"""Weight averaging during training: an exponential moving average (EMA, Polyak & Juditsky 1992; as used by
e.g. Tarvainen & Valpola 2017) or stochastic weight averaging (SWA, Izmailov et al. 2018) of the model.

Selected by ``train.weight_averaging.name`` (none | ema | swa). The trainer calls :meth:`WeightAverager.update`
after every optimizer step; the averaged model is evaluated at the end and saved as ``<run>/model_ema/`` or
``<run>/model_swa/`` in ``save_pretrained`` format. Built on ``torch.optim.swa_utils.AveragedModel``.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverager(nn.Module):
    """An averaged copy of a model's parameters, updated every ``every`` optimizer steps from ``start_step`` on.

    Only parameters are averaged (``use_buffers=False``): our buffers are integer position/type ids, which must
    not be averaged, and the towers use LayerNorm, so there are no BatchNorm statistics to recompute after SWA.

    Args:
        model: the (unwrapped) model being trained; it is deep-copied once.
        name: ``ema`` (``avg = decay * avg + (1 - decay) * theta``) or ``swa`` (equal-weight mean of the snapshots).
        decay: EMA decay per update.
        start_step: first optimizer step that contributes (SWA is usually started late in training).
        every: update period in optimizer steps.
    """

    def __init__(self, model: nn.Module, name: str = "ema", decay: float = 0.999, start_step: int = 0,
                 every: int = 1):
        super().__init__()
        if name not in ("ema", "swa"):
            raise ValueError(f"weight averaging {name!r} is unknown; choose ema or swa (or none to turn it off)")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.weight_averaging.decay must be in (0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"train.weight_averaging.every must be >= 1, got {every}")
        self.name, self.start_step, self.every = name, start_step, every
        avg_fn = get_ema_multi_avg_fn(decay) if name == "ema" else None
        self.averaged = AveragedModel(model, multi_avg_fn=avg_fn, use_buffers=False)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged model (same class as the trained one: it saves with ``save_pretrained``)."""
        return self.averaged.module

    @property
    def folder(self) -> str:
        return f"model_{self.name}"

    def update(self, model: nn.Module, step: int) -> bool:
        """Fold the current weights in if ``step`` is due; returns whether it was."""
        if step < self.start_step or (step - self.start_step) % self.every:
            return False
        self.averaged.update_parameters(model)
        return True

    @property
    def num_updates(self) -> int:
        return int(self.averaged.n_averaged.item())
