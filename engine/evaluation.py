"""Evaluation: predictions gathered across processes, overall / per-language metrics, modality ablations."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from torch import nn

from data.splits import SplitNotFoundError
from models.folder import save_thresholds

from .builders import build_dataset, build_loader
from .config import DataConfig
from .metrics import classification_metrics, majority_rate, per_group_metrics, tune_thresholds

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict(accelerator: Accelerator, model: nn.Module, loader, drop: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Run ``model`` over ``loader``; returns numpy ``scores`` (N, C), ``labels``, ``index`` (N,), ``lang`` (N,),
    and ``skipped``: the rows the loader dropped (``data.on_error=skip``), as ``{reason, file, line, ...}`` dicts.

    ``gather_for_metrics`` drops the samples padded onto the last batch of a multi-process run, so every dataset
    row is counted exactly once. Each batch's results are copied out (not kept as views), so memory grows by the
    results alone, whatever the size of the batches they came from.
    """
    was_training = model.training
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    chunks: dict[str, list[np.ndarray]] = {"scores": [], "labels": [], "index": [], "lang": []}
    skipped: list[dict] = []
    for batch in loader:
        skipped.extend(batch.pop("skipped", []))
        logits = model(batch, drop=drop)["logits"].float()
        scores = torch.sigmoid(logits) if unwrapped.multi_label else torch.softmax(logits, -1)
        gathered = accelerator.gather_for_metrics((scores, batch["labels"], batch["index"], batch["lang"]))
        for key, value in zip(chunks, gathered):
            chunks[key].append(value.cpu().numpy().copy())
    model.train(was_training)
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        skipped = gather_object(skipped)
    out: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in chunks.items()}
    out["skipped"] = skipped
    return out


def evaluate(accelerator: Accelerator, model: nn.Module, loader, languages: list[str],
             ablation: bool = True, reference_language: str | None = None,
             threshold: float | np.ndarray = 0.5) -> dict[str, Any]:
    """Metrics of ``model`` on ``loader``.

    Returns:
        ``overall`` metrics, ``per_language`` metrics, ``language_gap`` (accuracy of each language minus that of
        ``reference_language``, the training language, when given), ``majority_rate``, and under ``ablation`` the
        overall metrics with the text masked (``no_text``) and with the image masked (``no_image``).
        ``threshold`` is the multi-label decision threshold, scalar or per label ``(C,)``.
    """
    unwrapped = accelerator.unwrap_model(model)
    pred = predict(accelerator, model, loader)
    bad = int((~np.isfinite(pred["scores"])).any(axis=-1).sum()) if pred["scores"].ndim == 2 else 0
    if bad:
        raise FloatingPointError(f"the model's outputs are NaN or infinite for {bad} of {len(pred['scores'])} rows: "
                                 "its weights are not finite (a run that diverged, or a damaged checkpoint); "
                                 "evaluate an earlier checkpoint or retrain with a lower optim.lr")
    multi = unwrapped.multi_label
    out: dict[str, Any] = {
        "overall": classification_metrics(pred["scores"], pred["labels"], multi, threshold),
        "majority_rate": majority_rate(pred["labels"]) if len(pred["labels"]) else 0.0,
    }
    if len(languages) > 0 and (pred["lang"] >= 0).any():
        out["per_language"] = per_group_metrics(pred["scores"], pred["labels"], pred["lang"], languages, multi,
                                                threshold)
        ref = out["per_language"].get(reference_language) if reference_language else None
        if ref is not None:
            out["language_gap"] = {lang: m["accuracy"] - ref["accuracy"] for lang, m in out["per_language"].items()}
    if ablation and len(unwrapped.modalities) > 1:
        out["ablation"] = {}
        for name, drop in (("no_text", ("text",)), ("no_image", ("image",))):
            ab = predict(accelerator, model, loader, drop=drop)
            out["ablation"][name] = classification_metrics(ab["scores"], ab["labels"], multi, threshold)
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per (split, slice). Classification results get the columns accuracy / macro-F1 /
    AUROC / n; other tasks' results (retrieval, ...) one column per metric."""
    overall = [res["overall"] for res in results.values()]
    columns = ["accuracy", "macro_f1", "auroc", "n"] if not overall or "accuracy" in overall[0] else \
        sorted({k for m in overall for k in m}, key=lambda k: (k == "n", k))
    rows = [("split", "slice", *columns)]

    def add(split: str, name: str, m: dict[str, float]) -> None:
        fmt = lambda k: ("-" if k not in m else str(int(m[k])) if k == "n" else f"{m[k]:.4f}")  # noqa: E731
        rows.append((split, name, *map(fmt, columns)))

    for split, res in results.items():
        add(split, "all", res["overall"])
        for lang, m in res.get("per_language", {}).items():
            add(split, f"lang={lang}", m)
        for name, m in res.get("ablation", {}).items():
            add(split, name, m)
        if "majority_rate" in res:
            rows.append((split, "majority-class", f"{res['majority_rate']:.4f}", *["-"] * (len(columns) - 1)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tune_and_save_thresholds(accelerator: Accelerator, model: nn.Module, loader, model_dir: Path,
                             ) -> float | np.ndarray:
    """For a multi-label model: per-label thresholds tuned on ``loader`` (the eval split), written to the model
    folder (``thresholds.json``) so evaluate.py and predict.py apply the same ones. Otherwise 0.5."""
    if loader is None or not accelerator.unwrap_model(model).multi_label:
        return 0.5
    pred = predict(accelerator, model, loader)
    thresholds = tune_thresholds(pred["scores"], pred["labels"])
    if accelerator.is_main_process:
        save_thresholds(model_dir, accelerator.unwrap_model(model).label_names, thresholds)
    return thresholds


def write_predictions(accelerator: Accelerator, model: nn.Module, loader, dataset, path: Path,
                      threshold: float | np.ndarray = 0.5) -> Path:
    """Write one CSV row per example of ``dataset``: ``id,proba,label`` (the Hateful Memes submission format).

    ``proba`` is the positive-class probability for a binary task and the predicted class's probability
    otherwise; ``label`` the predicted class index. Multi-label: ``id,label`` with the predicted label names
    joined by ``|`` (using ``threshold``). Rows dropped with ``data.on_error=skip`` (while reading the file or
    loading an image) get no prediction: they are listed in ``<path stem>_skipped.json`` beside the CSV, with file,
    line and reason, and counted in a warning.
    """
    pred = predict(accelerator, model, loader)
    if not accelerator.is_main_process:
        return Path(path)
    skipped = list(getattr(dataset, "skipped", [])) + pred["skipped"]
    skip_file = Path(path).with_name(f"{Path(path).stem}_skipped.json")
    if skipped:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        skip_file.write_text(json.dumps({"count": len(skipped), "rows": skipped}, indent=1))
        logger.warning("%d rows have no prediction (data.on_error=skip): listed in %s", len(skipped), skip_file)
    else:
        skip_file.unlink(missing_ok=True)  # a stale list from an earlier run must not describe this one
    unwrapped = accelerator.unwrap_model(model)
    order = np.argsort(pred["index"], kind="stable")
    scores, index = pred["scores"][order], pred["index"][order]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if unwrapped.multi_label:
            writer.writerow(["id", "label"])
            for i, row in zip(index, scores >= threshold):
                names = [unwrapped.label_names[c] for c in np.flatnonzero(row)]
                writer.writerow([dataset.records[i]["id"], "|".join(names)])
        else:
            writer.writerow(["id", "proba", "label"])
            for i, row in zip(index, scores):
                proba = row[1] if row.shape[0] == 2 else row.max()
                writer.writerow([dataset.records[i]["id"], f"{proba:.6f}", int(row.argmax())])
    return Path(path)


def evaluate_splits(cfg: DictConfig, acc: Accelerator, task, model, tokenizer, languages: list[str],
                    loaders: dict[str, Any], threshold: float | Any = 0.5) -> dict[str, Any]:
    """Evaluate with ``task.evaluate`` on the given prepared loaders plus the configured test split.

    The test split is the one :func:`load_test_split` gives.
    ``threshold``: multi-label decision threshold(s), a scalar or per label ``(C,)`` (tuned on the eval split).
    """
    results = {}
    ref = cfg.data.languages[0] if cfg.data.languages else None
    if "test" not in loaders and (test_set := load_test_split(cfg)) is not None:
        unwrapped = acc.unwrap_model(model)
        loader = build_loader(cfg, test_set, tokenizer, unwrapped.image_data_config, False, languages)
        loaders = {**loaders, "test": acc.prepare(loader)}
    for split, loader in loaders.items():
        results[split] = task.evaluate(acc, model, loader, languages=languages, reference_language=ref,
                                       ablation=cfg.eval.modality_ablation, threshold=threshold)
    return results


def load_test_split(cfg: DictConfig):
    """The configured test split if it can be evaluated, else None with a log line saying why: a split released
    without labels (predictions for it come from ``evaluate.py --predictions``), or the default split name on a
    dataset that has no such split. A split named in the config that the dataset does not have is an error naming
    the splits it has (the trainer checks this before training)."""
    if not cfg.data.test_split:
        return None
    try:
        test_set = build_dataset(cfg, cfg.data.test_split, cfg.data.eval_languages)
    except SplitNotFoundError as err:
        if cfg.data.test_split != DataConfig.test_split:  # asked for by name: a typo must not pass unnoticed
            raise
        logger.warning("%s; not evaluated (set data.test_split=null if the dataset has none)", err)
        return None
    if not _has_labels(test_set):
        logger.info("test split %r has no labels: not evaluated (write its predictions with evaluate.py "
                    "--predictions)", cfg.data.test_split)
        return None
    return test_set


def _has_labels(dataset) -> bool:
    if not hasattr(dataset, "records"):  # streamed shards (data/webdataset.py) know it from their index pass
        return dataset.labelled
    return all(r.get("label") is not None for r in dataset.records[:100])
