"""Data and held-out scores for merges that need them (greedy soup, Fisher), built from a model's run config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator
from omegaconf import DictConfig

from engine.builders import build_dataset, build_loader, build_tokenizer
from engine.config import load_config
from engine.evaluation import predict
from engine.metrics import classification_metrics
from models import MultimodalModel

from .checkpoints import Checkpoint


def run_config(model: str | Path) -> tuple[DictConfig, Checkpoint]:
    """The saved config of the run a model belongs to (its data, tokenizer and batch settings)."""
    ckpt = Checkpoint.open(model)
    if ckpt.run_dir is None:
        raise FileNotFoundError(f"{model} has no config.yaml next to it: greedy soup and Fisher merging read the "
                                "data settings of the run, so give run folders written by train.py")
    return load_config(ckpt.run_dir / "config.yaml"), ckpt


def split_loader(model: str | Path, split: str, train: bool = False, batch_size: int | None = None):
    """A loader over ``split`` of the model's own dataset, preprocessed for that model."""
    cfg, ckpt = run_config(model)
    dataset = build_dataset(cfg, split, cfg.data.eval_languages if not train else cfg.data.languages)
    net = MultimodalModel.from_pretrained(ckpt.model_dir)
    tokenizer = build_tokenizer(cfg, ckpt.model_dir)
    return build_loader(cfg, dataset, tokenizer, net.image_data_config, False, dataset.languages, batch_size)


def held_out_scorer(model: str | Path, split: str = "val", metric: str = "accuracy"
                    ) -> Callable[[MultimodalModel], float]:
    """A function scoring any model of the same architecture on ``split`` (computed once per call)."""
    acc = Accelerator()
    loader = acc.prepare(split_loader(model, split))  # batches land on the accelerator's device

    def score(net: MultimodalModel) -> float:
        net = net.to(acc.device)
        pred = predict(acc, net, loader)
        value = classification_metrics(pred["scores"], pred["labels"], net.multi_label).get(metric)
        if value is None:
            raise KeyError(f"greedy.metric={metric!r} is not a metric; choose accuracy, macro_f1, precision, recall")
        return float(value)

    return score

