"""Evaluation: predictions gathered across processes, overall / per-language metrics, modality ablations."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from torch import nn

from .builders import build_dataset, build_loader
from .metrics import classification_metrics, majority_rate, per_group_metrics, tune_thresholds

THRESHOLDS_FILE = "thresholds.json"  # per-label multi-label thresholds, saved in the model folder


@torch.no_grad()
def predict(accelerator: Accelerator, model: nn.Module, loader, drop: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Run ``model`` over ``loader``; returns numpy ``scores`` (N, C), ``labels``, ``index`` (N,), ``lang`` (N,).

    ``gather_for_metrics`` drops the samples padded onto the last batch of a multi-process run, so every dataset
    row is counted exactly once.
    """
    was_training = model.training
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    chunks: dict[str, list[np.ndarray]] = {"scores": [], "labels": [], "index": [], "lang": []}
    for batch in loader:
        logits = model(batch, drop=drop)["logits"].float()
        scores = torch.sigmoid(logits) if unwrapped.multi_label else torch.softmax(logits, -1)
        gathered = accelerator.gather_for_metrics((scores, batch["labels"], batch["index"], batch["lang"]))
        for key, value in zip(chunks, gathered):
            chunks[key].append(value.cpu().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in chunks.items()}


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
    """A plain-text table: one row per (split, slice), columns accuracy / macro-F1 / AUROC / n."""
    rows = [("split", "slice", "accuracy", "macro_f1", "auroc", "n")]

    def add(split: str, name: str, m: dict[str, float]) -> None:
        fmt = lambda k: f"{m[k]:.4f}" if k in m else "-"  # noqa: E731
        rows.append((split, name, fmt("accuracy"), fmt("macro_f1"), fmt("auroc"), str(m.get("n", "-"))))

    for split, res in results.items():
        add(split, "all", res["overall"])
        for lang, m in res.get("per_language", {}).items():
            add(split, f"lang={lang}", m)
        for name, m in res.get("ablation", {}).items():
            add(split, name, m)
        rows.append((split, "majority-class", f"{res['majority_rate']:.4f}", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tune_and_save_thresholds(accelerator: Accelerator, model: nn.Module, loader, model_dir: Path,
                             ) -> float | np.ndarray:
    """For a multi-label model: per-label thresholds tuned on ``loader`` (the eval split), written to
    ``model_dir/thresholds.json`` so evaluate.py applies the same ones to the test split. Otherwise 0.5."""
    if loader is None or not accelerator.unwrap_model(model).multi_label:
        return 0.5
    pred = predict(accelerator, model, loader)
    thresholds = tune_thresholds(pred["scores"], pred["labels"])
    if accelerator.is_main_process:
        names = accelerator.unwrap_model(model).label_names
        (Path(model_dir) / THRESHOLDS_FILE).write_text(json.dumps(dict(zip(names, thresholds.tolist())), indent=1))
    return thresholds


def load_thresholds(model_dir: Path, label_names: list[str]) -> float | np.ndarray:
    """The thresholds saved by :func:`tune_and_save_thresholds` (in label order), or 0.5 if none were saved."""
    path = Path(model_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return 0.5
    saved = json.loads(path.read_text())
    return np.array([saved.get(name, 0.5) for name in label_names])


def write_predictions(accelerator: Accelerator, model: nn.Module, loader, dataset, path: Path,
                      threshold: float | np.ndarray = 0.5) -> Path:
    """Write one CSV row per example of ``dataset``: ``id,proba,label`` (the Hateful Memes submission format).

    ``proba`` is the positive-class probability for a binary task and the predicted class's probability
    otherwise; ``label`` the predicted class index. Multi-label: ``id,label`` with the predicted label names
    joined by ``|`` (using ``threshold``).
    """
    pred = predict(accelerator, model, loader)
    if not accelerator.is_main_process:
        return Path(path)
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


def evaluate_splits(cfg: DictConfig, acc: Accelerator, model, tokenizer, languages: list[str],
                    loaders: dict[str, Any], threshold: float | Any = 0.5) -> dict[str, Any]:
    """Evaluate on the given prepared loaders plus the configured test split (if it exists).

    ``threshold``: multi-label decision threshold(s), a scalar or per label ``(C,)`` (tuned on the eval split).
    """
    results = {}
    ref = cfg.data.languages[0] if cfg.data.languages else None
    if cfg.data.test_split and "test" not in loaders:
        try:
            test_set = build_dataset(cfg, cfg.data.test_split, cfg.data.eval_languages)
        except FileNotFoundError:
            test_set = None
        if test_set is not None and _has_labels(test_set):
            unwrapped = acc.unwrap_model(model)
            loader = build_loader(cfg, test_set, tokenizer, unwrapped.image_data_config, False, languages)
            loaders = {**loaders, "test": acc.prepare(loader)}
    for split, loader in loaders.items():
        results[split] = evaluate(acc, model, loader, languages, ablation=cfg.eval.modality_ablation,
                                  reference_language=ref, threshold=threshold)
    return results


def _has_labels(dataset) -> bool:
    if not hasattr(dataset, "records"):  # streamed shards (data/webdataset.py) know it from their index pass
        return dataset.labelled
    return all(r.get("label") is not None for r in dataset.records[:100])
