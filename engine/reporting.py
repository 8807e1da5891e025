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


def result_scalars(split: str, res: dict[str, Any]) -> dict[str, float]:
    """An evaluation as flat scalars for the log and the trackers: the overall metrics (``val/accuracy``), each
    language's (``val/lang/de/accuracy``), the gap to the training language (``val/gap/de``), the modality
    ablations (``val/no_text/accuracy``) and the majority rate."""
    values = {f"{split}/{k}": v for k, v in res["overall"].items()}
    for lang, m in res.get("per_language", {}).items():
        values.update({f"{split}/lang/{lang}/{k}": m[k] for k in ("accuracy", "macro_f1", "n") if k in m})
    values.update({f"{split}/gap/{lang}": gap for lang, gap in res.get("language_gap", {}).items()})
    for name, m in res.get("ablation", {}).items():
        values.update({f"{split}/{name}/{k}": m[k] for k in ("accuracy", "macro_f1") if k in m})
    if "majority_rate" in res:
        values[f"{split}/majority_rate"] = res["majority_rate"]
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


def report_predictions(accelerator, cfg, model, eval_loader, eval_set, tokenizer, languages, threshold, step: int
                       ) -> None:
    """The end of a run on the trackers: confusion matrix and sample predictions of the test split (the eval split
    when there is no labelled test split); see :func:`engine.tracking.log_predictions`."""
    from .builders import build_loader
    from .evaluation import load_test_split, predict
    from .tracking import log_predictions

    unwrapped = accelerator.unwrap_model(model)
    split, dataset, loader = "val", eval_set, eval_loader
    test_set = load_test_split(cfg)
    if test_set is not None:
        split, dataset = "test", test_set
        loader = accelerator.prepare(build_loader(cfg, test_set, tokenizer, unwrapped.image_data_config, False,
                                                  languages))
    if loader is None:
        return
    pred = predict(accelerator, model, loader)
    log_predictions(accelerator, cfg, split, pred, unwrapped.label_names, dataset.records, step, unwrapped.multi_label,
                    threshold)
