"""What a run reports as it trains: throughput and data wait, the values of a log step (read from the device in
one transfer), rows dropped by the data pipeline, and what ``train.init_from`` loaded."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from accelerate.utils import gather_object

from .nonfinite import NonFiniteGuard
from .run_folder import RunFolder

logger = logging.getLogger(__name__)


class StepMeter:
    """Samples per second and the share of time spent waiting for the data loader, between log steps."""

    def __init__(self) -> None:
        self.start, self.seen, self.wait = time.perf_counter(), 0, 0.0

    def timed(self, loader):
        """Iterate ``loader``, adding the seconds spent waiting for each batch to ``wait``."""
        it = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - start
            yield batch

    def rates(self, processes: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        values = {"train/samples_per_s": self.seen * processes / elapsed, "train/data_wait_frac": self.wait / elapsed}
        self.start, self.seen, self.wait = time.perf_counter(), 0, 0.0
        return values


def log_values(out: dict[str, Any], guard: NonFiniteGuard, meter: StepMeter, optimizer, processes: int
               ) -> dict[str, float]:
    """The values of a log step: the task's scalars (``train/loss``, ...), the gradient norm, the guard's findings
    (raising on a non-finite step under ``train.nonfinite=stop``), throughput and learning rates.

    The loss and every other device value are read in one transfer: the only time the loop waits for the device
    between evaluations.
    """
    scalars = {f"train/{k}": v for k, v in out.items()
               if k not in ("outputs", "grad_norm") and torch.is_tensor(v) and v.numel() == 1}
    if out.get("grad_norm") is not None:
        scalars["train/grad_norm"] = out["grad_norm"]
    read = torch.stack([v.detach().float().reshape(()) for v in scalars.values()] + guard.values()).tolist()
    values = dict(zip(scalars, read))
    values.update(guard.check(*read[-2:]))
    values.update(meter.rates(processes))
    values.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)})
    if torch.cuda.is_available():
        values["gpu/max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return values


def report_skips(run: RunFolder, accelerator, loaded: list[dict], datasets: dict[str, Any]) -> None:
    """Rows dropped while reading a split (counted once: every process read the same files) or while loading an
    example (gathered from every process), written to ``data_skipped.json`` and counted in a warning."""
    loaded = gather_object(loaded) if accelerator.num_processes > 1 else loaded
    read = [dict(row, split=split) for split, ds in datasets.items() if ds is not None
            for row in getattr(ds, "skipped", [])]
    counts = run.report_skips(read + list(loaded))
    if counts:
        logger.warning("skipped %d rows: %s (details in %s)", sum(counts.values()), counts,
                       run.path / "data_skipped.json")


def report_init(run: RunFolder, report) -> None:
    """One line for ``train.init_from`` (on the main process); every tensor name in ``init_report.json``."""
    path = run.write_json("init_report.json", report.as_dict())
    logger.info("%s (every tensor in %s)", report.summary(), path)
