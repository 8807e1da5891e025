"""Test-wide settings: never touch the network, keep W&B offline, keep torch to the machine's cores."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# A tiny but complete configuration: shapes benchmark with a few dozen examples, 1-layer BERT, 1-block ViT.
TINY_OVERRIDES = [
    "data.params={n_train: 48, n_val: 16, n_test: 16, image_size: 32}",
    "data.image_size=32",
    "model.text.tiny={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}",
    "model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}",
    "model.fusion.dim=32",
    "train.batch_size=16",
    "eval.batch_size=32",
    "run.progress_bar=false",
    "run.log_every=1",
]


def tiny_overrides(tmp: Path, name: str = "tiny", **extra: object) -> list[str]:
    """Overrides for a tiny run writing under ``tmp``; the generated dataset is shared per test session."""
    return TINY_OVERRIDES + [f"data.root={_DATA_ROOT}", f"run.output_dir={tmp}", f"run.name={name}"] + [
        f"{k}={v}" for k, v in extra.items()
    ]


_DATA_ROOT: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _tiny_data_root(tmp_path_factory):
    global _DATA_ROOT
    if _DATA_ROOT is None:
        _DATA_ROOT = tmp_path_factory.mktemp("shapes")
    return _DATA_ROOT


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A trained tiny run folder (config.yaml, model/, metrics.json), shared by the tests that need one."""
    from crossfuse.commands import train

    out = tmp_path_factory.mktemp("runs")
    train.main(tiny_overrides(out, "tiny", **{"train.max_steps": 6, "model.fusion.name": "concat"}))
    return out / "tiny"


@pytest.fixture(scope="session")
def contrastive_run(tmp_path_factory) -> Path:
    """A tiny run aligned with ``train.task=contrastive`` (its projections in ``model/task_state.safetensors``)."""
    from crossfuse.commands import train

    out = tmp_path_factory.mktemp("contrastive")
    train.main(tiny_overrides(out, "clip", **{"train.task": "contrastive", "train.task_params": "{dim: 24}",
                                              "train.max_steps": 4, "train.best_metric": "r@1_mean"}))
    return out / "clip"
