"""Catching a NaN or infinite loss without reading the device at every step.

Reading a loss value (``loss.item()``) makes the host wait for the device, which on a GPU stalls the queue of
kernels at every step. The guard instead keeps its findings on the device: for each optimizer step it marks whether
the gradient norm (or, where there is none, the loss) was finite, records the first step that was not, and counts
them. With our fused AdamW the same flag makes the optimizer skip that update on the device (the mechanism
``torch.amp.GradScaler`` uses for fp16 overflow), so a bad batch never reaches the weights. The host reads the
findings only when it reads the loss anyway (at log steps) and before an evaluation or a checkpoint:
``train.nonfinite=stop`` then raises naming the first bad step, ``skip`` logs how many steps were skipped.

Where the optimizer is not ours (DeepSpeed) or not fused (FSDP), a skip needs the flag on the host before the
update: ``skip`` then reads the loss at every step, and ``stop`` learns of the problem at the next log step.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


class NonFiniteGuard:
    """Device-side record of non-finite steps.

    Args:
        mode: ``stop`` or ``skip`` (``train.nonfinite``).
        optimizer: the torch optimizer (unwrapped); when it is a fused AdamW, bad updates are skipped on the device.
        device: where the loss lives.
    """

    def __init__(self, mode: str, optimizer: torch.optim.Optimizer | None, device: torch.device):
        self.mode = mode
        self.optimizer = optimizer if _is_fused(optimizer) else None
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self.reported = 0

    @property
    def checks_on_host(self) -> bool:
        """``skip`` without a fused optimizer: the loss must be read before each update to skip it."""
        return self.mode == "skip" and self.optimizer is None

    def observe(self, step: int, loss: Tensor, grad_norm: Tensor | None) -> None:
        """Record optimizer step ``step`` (1-based), before ``optimizer.step()``.

        The gradient norm is the same on every process (gradients are all-reduced first), so all processes skip or
        stop together; the local loss is the fallback when the launcher computes no norm (DeepSpeed).
        """
        value = grad_norm if grad_norm is not None else loss.detach()
        bad = ~torch.isfinite(value.float())
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step),
                                     self.first_bad)
        self.count += bad.long()
        if self.optimizer is not None:
            self.optimizer.found_inf = bad.float()  # fused AdamW leaves params, moments and step count as they were

    def values(self) -> list[Tensor]:
        """The tensors to read at a log step (batched with the loss into one transfer)."""
        return [self.first_bad.float(), self.count.float()]

    def check(self, first_bad: float, count: float) -> dict[str, float]:
        """Act on values read from :meth:`values`: raise (``stop``) or report new skips (``skip``)."""
        if count > 0 and self.mode == "stop":
            raise FloatingPointError(
                f"non-finite loss or gradient at step {int(first_bad)} ({int(count)} steps so far); lower optim.lr, "
                "enable optim.clip_grad, or set train.nonfinite=skip to skip such steps")
        if count > self.reported:
            logger.warning("%d steps with a non-finite loss or gradient skipped (first at step %d; "
                           "train.nonfinite=skip)", count - self.reported, first_bad)
            self.reported = int(count)
        return {"train/skipped_steps": count}

    def check_now(self) -> dict[str, float]:
        """Read and act now (before an evaluation or a checkpoint: a NaN model is never evaluated or saved)."""
        first_bad, count = torch.stack(self.values()).tolist()
        return self.check(first_bad, count)


def _is_fused(optimizer) -> bool:
    return isinstance(optimizer, torch.optim.AdamW) and bool(optimizer.defaults.get("fused"))
