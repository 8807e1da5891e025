"""Losses over the global batch of several processes: a differentiable all-gather and a mean over every process's
rows, written so that DDP's gradient averaging yields exactly the one-process gradient of the concatenated batch.

Why the scaling is what it is. DDP divides the sum of the processes' parameter gradients by the number of
processes ``W``. Two cases arise:

* Every process computes the *same* global loss ``L`` (CLIP's full similarity matrix on each process). The
  backward of :func:`all_gather_rows` sums, over processes, the gradient each one sends to a process's own rows, so
  a process receives ``W * dL/dx_r`` for its rows ``x_r``; after DDP's division by ``W`` the parameters get
  ``sum_r dL/dx_r * dx_r/dtheta = dL/dtheta``. Parameters used outside the gather (the temperature) get ``dL/dtheta``
  on every process, which DDP's average keeps.
* Each process computes its *share* of the loss, a sum ``S_r`` over its own rows (open_clip's ``local_loss``, or a
  pointwise loss): the global mean is ``sum_r S_r / N`` with ``N`` the rows of all processes, so each process
  minimises ``W * S_r / N`` (:func:`mean_over_processes`), whose gradients DDP averages back to ``dL/dtheta``.

Without a process group, or with one process, everything here is the identity (and costs nothing).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 with per-process row counts; backward sums the incoming gradients of every process
    and returns this process's rows (the transpose of "concatenate the shards")."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int) -> Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        longest = max(sizes)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: len(x)] = x  # collectives need one shape on every process
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every process's loss depends on our rows: add up what each one sends back
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]], None, None


def all_gather_rows(*tensors: Tensor | None) -> tuple[tuple[Tensor | None, ...], slice]:
    """Concatenate tensors over processes along dim 0, in rank order, keeping the graph to each process's rows.

    Args:
        tensors: ``(n_r, ...)`` tensors with the same ``n_r`` (which may differ between processes); ``None``
            entries pass through. Integer tensors (ids) are gathered too, without gradients.

    Returns:
        The gathered ``(N, ...)`` tensors, ``N = sum_r n_r``, and the slice of this process's rows in them.
    """
    present = [t for t in tensors if t is not None]
    n = len(present[0])
    rank, size = world()
    if size == 1:
        return tensors, slice(0, n)
    counts = [torch.zeros(1, dtype=torch.long, device=present[0].device) for _ in range(size)]
    dist.all_gather(counts, torch.tensor([n], dtype=torch.long, device=present[0].device))
    sizes = [int(c.item()) for c in counts]
    gathered = tuple(None if t is None else _GatherRows.apply(t, sizes, rank) for t in tensors)
    start = sum(sizes[:rank])
    return gathered, slice(start, start + n)


def mean_over_processes(total: Tensor, count: int | Tensor) -> Tensor:
    """This process's share of a mean over the rows of all processes.

    Args:
        total: scalar, the sum of a per-row loss over this process's ``count`` rows.
        count: this process's number of rows (``0`` is allowed: its share is then zero).

    Returns:
        A scalar whose *value* is the global mean ``sum_r total_r / sum_r count_r`` (the same on every process, so
        it can be logged) and whose *gradient* is that of ``W * total / N``: after DDP averages the processes'
        gradients, the parameters get the gradient of the global mean. With one process: ``total / count``.
    """
    _, size = world()
    count = torch.as_tensor(count, dtype=total.dtype, device=total.device)
    if size == 1:
        return total / count.clamp_min(1)  # no row: a zero loss, not 0/0
    sums = torch.stack([total.detach(), count])
    dist.all_reduce(sums)
    rows = sums[1].clamp_min(1)
    share = total * size / rows
    return share + (sums[0] / rows - share).detach()
