"""Trackers through Accelerate: W&B offline (run id kept in the run folder across a resume) and TensorBoard."""

import json
from pathlib import Path

import pytest
from conftest import tiny_overrides

from crossfuse.commands import train
from engine.tracking import WANDB_ID_FILE

# Two steps, a checkpoint after each, one evaluation (no ablations, no test split): every kind of value is logged.
TRACKED = {"train.max_steps": 2, "train.save_every": 1, "train.eval_every": 2, "eval.modality_ablation": "false",
           "data.test_split": "null", "run.group": "sweep-a"}


def test_wandb_offline_resume_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = tiny_overrides(tmp_path, "wb", **TRACKED, **{"run.tracker": "wandb", "run.wandb_mode": "offline"})
    train.main(overrides)
    run = tmp_path / "wb"
    run_id = (run / WANDB_ID_FILE).read_text().strip()
    first = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(first) == 1 and (first[0] / f"run-{run_id}.wandb").stat().st_size > 0
    init_log = (first[0] / "logs" / "debug.log").read_text()  # offline runs keep what wandb.init received here
    assert "'group': 'sweep-a'" in init_log and "'max_steps': 2" in init_log  # the resolved config went to W&B

    train.main(overrides + ["--resume", str(run / "checkpoints" / "step_00000001")])
    assert (run / WANDB_ID_FILE).read_text().strip() == run_id
    runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(run_id) for p in runs)  # `wandb sync` merges them into one run


def test_wandb_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # the config wins over the environment
    quick = {"train.max_steps": 1, "data.eval_split": "''", "data.test_split": "null", "run.tracker": "wandb"}
    train.main(tiny_overrides(tmp_path, "wb_disabled", **quick, **{"run.wandb_mode": "disabled"}))
    assert not list((tmp_path / "wb_disabled").glob("wandb/*run-*"))
    assert (tmp_path / "wb_disabled" / "model" / "model.safetensors").is_file()


def test_tensorboard_logs_losses_lr_throughput_and_metrics(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    train.main(tiny_overrides(tmp_path, "tb", **TRACKED, **{"run.tracker": "tensorboard"}))
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file under the run folder"
    tags: set[str] = set()
    for path in events:
        acc = event_accumulator.EventAccumulator(str(path.parent))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        if "train/loss" in acc.Tags()["scalars"]:
            assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    for tag in ("train/loss", "train/samples_per_s", "train/data_wait_frac", "lr/fusion_head", "val/accuracy"):
        assert tag in tags, f"{tag} not logged to TensorBoard (logged: {sorted(tags)})"


def test_a_fresh_start_gets_a_new_wandb_run_and_a_resume_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = tiny_overrides(tmp_path, "wb", **TRACKED, **{"run.tracker": "wandb", "run.wandb_mode": "offline"})
    train.main(overrides)
    first = (tmp_path / "wb" / WANDB_ID_FILE).read_text().strip()
    train.main(overrides + ["run.overwrite=true"])  # a new run in the same folder: W&B must not mix the two
    second = (tmp_path / "wb" / WANDB_ID_FILE).read_text().strip()
    assert second != first
    assert all(p.name.endswith(second) for p in (tmp_path / "wb" / "wandb").glob("offline-run-*"))
    train.main(overrides + ["--resume", str(tmp_path / "wb" / "checkpoints" / "step_00000001")])
    assert (tmp_path / "wb" / WANDB_ID_FILE).read_text().strip() == second


def _wandb_records(path):
    """The records of a W&B run's ``.wandb`` transaction log (its header, then LevelDB's log format: 32 KiB blocks
    of checksummed chunks), each parsed with wandb's own protobuf definitions."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, block, pending = Path(path).read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B", "not a W&B transaction log"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full / first, then middle / last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _wandb_history_keys(run_file) -> set[str]:
    return {item.key or "/".join(item.nested_key) for record in _wandb_records(run_file)
            if record.WhichOneof("record_type") == "history" for item in record.history.item}


DASHBOARD = {"train.max_steps": 2, "train.eval_every": 2, "data.languages": "[en]", "eval.modality_ablation": "true"}


def test_wandb_gets_languages_gaps_ablations_a_confusion_matrix_and_predictions(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    train.main(tiny_overrides(tmp_path, "dash", **DASHBOARD, **{"run.tracker": "wandb", "run.wandb_mode": "offline"}))
    run_id = (tmp_path / "dash" / WANDB_ID_FILE).read_text().strip()
    (folder,) = (tmp_path / "dash" / "wandb").glob(f"offline-run-*-{run_id}")
    keys = _wandb_history_keys(folder / f"run-{run_id}.wandb")
    for key in ("val/lang/de/accuracy", "val/gap/de", "test/lang/ru/accuracy", "test/gap/fr", "test/no_text/accuracy",
                "test/no_image/accuracy", "test/predictions/_type", "test/confusion_matrix_table/_type"):
        assert key in keys, f"{key} not logged to W&B (logged: {sorted(keys)})"
    (table,) = (folder / "files" / "media" / "table" / "test").glob("predictions_*.table.json")
    predictions = json.loads(table.read_text())  # W&B's own table file
    assert predictions["columns"][:5] == ["id", "text", "image", "label", "predicted"] and predictions["data"]


def test_tensorboard_gets_the_same_and_a_confusion_matrix_figure(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    train.main(tiny_overrides(tmp_path, "tbd", **DASHBOARD, **{"run.tracker": "tensorboard"}))
    scalars, images, texts = set(), set(), set()
    for path in (tmp_path / "tbd").rglob("events.out.tfevents.*"):
        acc = event_accumulator.EventAccumulator(str(path.parent), size_guidance={"images": 0, "tensors": 0})
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        images |= set(acc.Tags()["images"])
        texts |= set(acc.Tags()["tensors"])
    assert {"val/lang/es/accuracy", "val/gap/es", "test/no_image/accuracy", "test/majority_rate"} <= scalars
    assert "test/confusion_matrix" in images
    assert any(tag.startswith("test/predictions") for tag in texts), texts
