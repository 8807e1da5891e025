"""Reliability of the loop: pre-emption signals, exact resume, atomic checkpoints, non-finite losses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from crossfuse.commands import train
from engine.checkpoint import STATE_FILE, list_checkpoints, prune_checkpoints, resolve_resume
from engine.tasks import ClassificationTask
from models import MultimodalModel

ROOT = Path(__file__).resolve().parent.parent
# 48 training rows / batch 16 = 3 steps per epoch, so 8 steps cross two epoch boundaries; evaluation every
# 4 steps keeps the best-model state in play. No test split and no ablations: they do not touch resume.
RESUME = {"train.max_steps": 8, "train.save_every": 4, "train.eval_every": 4, "train.keep_last": 2,
          "eval.modality_ablation": "false", "data.test_split": "null", "run.seed": 7}


def _train_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    # throughput figures differ from run to run; everything else must not
    return [{k: v for k, v in r.items() if k not in ("train/samples_per_s", "train/data_wait_frac")} for r in rows]


def test_sigterm_saves_checkpoint_and_resume_matches_uninterrupted(tmp_path):
    ref = train.main(tiny_overrides(tmp_path, "ref", **RESUME))

    # The same run in a subprocess, stopped by SIGTERM (what SLURM sends before pre-emption) once it has logged.
    run = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *tiny_overrides(tmp_path, "cut", **RESUME)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not ((run / "log.jsonl").is_file() and (run / "log.jsonl").read_text().strip()):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "the training subprocess logged no step within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output[-3000:]
    assert "SIGTERM received" in output and "--resume latest" in output
    latest = resolve_resume(run, "latest")
    stopped_at = json.loads((latest / STATE_FILE).read_text())["step"]
    assert 1 <= stopped_at < 8, f"the signal should stop the run early, it stopped at step {stopped_at}"
    assert (latest / "model.safetensors").is_file() and not list((run / "checkpoints").glob(".tmp-*"))
    assert not (run / "metrics.json").exists()  # an interrupted run is not a finished one

    resumed = train.main(tiny_overrides(tmp_path, "cut", **RESUME) + ["--resume", "latest"])
    for name in ("checkpoints/step_00000008/model.safetensors", "model/model.safetensors"):
        a, b = load_file(str(tmp_path / "ref" / name)), load_file(str(run / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resuming from step {stopped_at}"
    assert resumed == ref  # same best step, same metrics
    assert _train_rows(run) == _train_rows(tmp_path / "ref")  # same losses, learning rates, no duplicated rows
    assert [p.name for p in list_checkpoints(run)] == ["step_00000004", "step_00000008"]  # keep_last=2


def test_resume_latest_skips_incomplete_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in (("step_00000002", True), ("step_00000004", True), ("step_00000006", False),
                           (".tmp-step_00000008", True)):
        (root / name).mkdir(parents=True)
        (root / name / "model.safetensors").write_bytes(b"")
        if complete:
            (root / name / STATE_FILE).write_text("{}")
    # step_6 has no trainer state (a crash mid-save in an older layout), .tmp-step_8 was never renamed
    assert resolve_resume(tmp_path, "latest") == root / "step_00000004"
    prune_checkpoints(tmp_path, keep_last=1)
    assert sorted(p.name for p in root.iterdir()) == ["step_00000004", "step_00000006"]
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resolve_resume(tmp_path / "elsewhere", "latest")
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        resolve_resume(tmp_path, str(root / "step_00000006"))


@pytest.fixture
def nan_on_second_call(monkeypatch):
    """The classification loss becomes NaN on the second training batch."""
    original, calls = ClassificationTask.forward, []

    def call(self, model, batch):
        out = original(self, model, batch)
        if model.training:
            calls.append(1)
            if len(calls) == 2:
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(ClassificationTask, "forward", call)


NO_EVAL = {"train.max_steps": 3, "data.eval_split": "''", "data.test_split": "null"}


def test_nonfinite_loss_stops_naming_the_step(tmp_path, nan_on_second_call):
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient at step 2 .*train.nonfinite=skip"):
        train.main(tiny_overrides(tmp_path, **NO_EVAL, **{"run.log_every": 3}))  # found at the log step after it
    assert not (tmp_path / "tiny" / "model").exists()  # a NaN model is never saved


@pytest.mark.parametrize("on_device", [True, False], ids=["fused-optimizer", "host-check"])
def test_nonfinite_loss_skipped_when_configured(tmp_path, nan_on_second_call, monkeypatch, caplog, on_device):
    """The bad update never reaches the weights: skipped on the device by the fused AdamW, or (where the optimizer
    is not ours: DeepSpeed, FSDP) after reading the loss on the host."""
    if not on_device:
        monkeypatch.setattr("engine.trainer.fused_optimizer_ok", lambda acc: False)
    with caplog.at_level("WARNING", logger="engine"):
        out = train.main(tiny_overrides(tmp_path, **NO_EVAL, **{"train.nonfinite": "skip"}))
    assert out["steps"] == 3
    assert "skipped" in caplog.text and "train.nonfinite=skip" in caplog.text
    rows = [r for r in _train_rows(tmp_path / "tiny") if "train/loss" in r]
    if on_device:  # the step happened (and is logged with its NaN loss), its update did not
        assert [r["train/skipped_steps"] for r in rows] == [0, 1, 1]
    else:  # the batch was dropped before backward: three finite steps
        assert all(torch.isfinite(torch.tensor([r["train/loss"] for r in rows])))
    model = MultimodalModel.from_pretrained(tmp_path / "tiny")
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())
