"""Launch paths on CPU: two DDP processes (gloo) through `accelerate launch`, DeepSpeed ZeRO-2 as one process,
and the performance switches (bf16, gradient checkpointing, channels-last, torch.compile) from config."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from conftest import tiny_overrides
from safetensors.torch import load_file

from crossfuse.commands import train
from models import MultimodalModel

ROOT = Path(__file__).resolve().parent.parent
# Dropout off and an image-only model: with dropout, each process draws its own masks, so two processes could
# not reproduce one process's updates. ViT without dropout, fusion and head dropout 0 make training deterministic.
DETERMINISTIC = {"model.fusion.name": "image_only", "model.fusion.dropout": 0, "model.head.dropout": 0,
                 "train.max_steps": 3, "eval.modality_ablation": "false", "run.seed": 5}


def _run(cmd: list[str], env: dict | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_and_evaluate_like_one(tmp_path):
    """Two processes with batch 8 each take the same optimizer steps as one process with batch 16.

    Asserted: identical evaluation counts (every val/test row counted once, none padded twice), weights equal to
    within 1e-5 and metrics equal to within 1e-6 (gradients are averaged over processes in another order).
    """
    one = train.main(tiny_overrides(tmp_path, "one", **DETERMINISTIC))
    _run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu_2proc.yaml",
          "--main_process_port", str(_free_port()), "train.py",
          *tiny_overrides(tmp_path, "two", **DETERMINISTIC, **{"train.batch_size": 8})])
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["steps"] == one["steps"] == 3
    for split in ("val", "test"):
        a, b = one["results"][split]["overall"], two["results"][split]["overall"]
        assert a["n"] == b["n"] == 80
        for metric in ("accuracy", "macro_f1", "auroc"):
            assert b[metric] == pytest.approx(a[metric], abs=1e-6), (split, metric)
    w1 = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("launch_config", ["deepspeed_zero2", "deepspeed_zero3", "fsdp"])
def test_sharded_launch_configs_train_save_and_resume(tmp_path, launch_config):
    """`accelerate launch --config_file configs/accelerate/<config>.yaml` exactly as the docs say, in bf16, as one
    CPU process (Accelerate has no multi-process DeepSpeed path on CPU; several GPUs: docs/distributed.md).

    Each of these launches failed on a GPU machine before the fixes it exercises (an earlier test covered ZeRO-2
    alone, with Accelerate's environment set by hand): Accelerate refused a `mixed_precision` key next to a
    DeepSpeed config file, ZeRO-3 met a model of two dtypes and left the ViT's own parameters partitioned, FSDP2's
    sharded weights could not be written. Asserted: the checkpoint is written and resumed, every weight is saved
    whole (the shapes of an unsharded model) and the saved model loads.
    """
    if launch_config.startswith("deepspeed"):
        pytest.importorskip("deepspeed")

    def overrides(steps: int) -> list[str]:
        return tiny_overrides(tmp_path, "run", **{"train.max_steps": steps, "train.save_every": 2,
                                                  "train.mixed_precision": "bf16", "eval.modality_ablation": "false",
                                                  "data.test_split": "null"})

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              f"configs/accelerate/{launch_config}.yaml", "--num_processes", "1", "--main_process_port",
              str(_free_port()), "train.py"]
    out = _run([*launch, *overrides(2)])
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "step_00000002"
    assert (checkpoint / "trainer_state.json").is_file(), out[-3000:]
    if launch_config.startswith("deepspeed"):
        assert (checkpoint / "pytorch_model").is_dir()  # DeepSpeed's own (ZeRO) checkpoint layout
    assert json.loads((run / "metrics.json").read_text())["results"]["val"]["overall"]["n"] == 80
    saved = load_file(str(run / "model" / "model.safetensors"))
    reference = MultimodalModel.from_pretrained(run / "model").state_dict()
    assert {k: tuple(v.shape) for k, v in saved.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    # resumed from the sharded checkpoint for two more steps; DeepSpeed's checkpoints are pickles, which load only
    # when the user says the checkpoint is theirs
    trust = []
    if launch_config.startswith("deepspeed"):
        refused = subprocess.run([*launch, *overrides(4), "--resume", "latest"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert refused.returncode != 0 and "train.trust_checkpoint=true" in refused.stderr, refused.stderr[-3000:]
        trust = ["train.trust_checkpoint=true"]
    out = _run([*launch, *overrides(4), *trust, "--resume", "latest"])
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4, out[-3000:]
    assert (run / "checkpoints" / "step_00000004" / "trainer_state.json").is_file()
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()
              if "train/loss" in line]
    assert logged == [1, 2, 3, 4]  # continued at step 3; a fresh start would have logged steps 1 and 2 again


@pytest.mark.parametrize("launch_config", ["deepspeed_zero2", "deepspeed_zero3", "fsdp"])
def test_sharded_launch_takes_the_same_steps_as_plain_training(tmp_path, launch_config):
    """In fp32, one process under ZeRO-2, ZeRO-3 or FSDP2 ends with the weights of plain training (within 1e-5):
    the sharding wrappers, DeepSpeed's own optimizer step and clipping, and the gathered save change nothing."""
    if launch_config.startswith("deepspeed"):
        pytest.importorskip("deepspeed")
    fp32 = {**DETERMINISTIC, "train.mixed_precision": "no"}  # `no` also overrides fsdp.yaml's bf16
    train.main(tiny_overrides(tmp_path, "plain", **fp32))
    _run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
          f"configs/accelerate/{launch_config}.yaml", "--num_processes", "1", "--main_process_port",
          str(_free_port()), "train.py", *tiny_overrides(tmp_path, "sharded", **fp32)])
    plain = load_file(str(tmp_path / "plain" / "model" / "model.safetensors"))
    sharded = load_file(str(tmp_path / "sharded" / "model" / "model.safetensors"))
    assert plain.keys() == sharded.keys()
    for key in plain:
        torch.testing.assert_close(sharded[key], plain[key], atol=1e-5, rtol=1e-4, msg=key)


def test_precision_checkpointing_channels_last_build_and_step(tmp_path):
    """bf16 autocast, gradient checkpointing in both towers and a channels-last CNN tower, trained two steps."""
    AcceleratorState._reset_state()  # Accelerate keeps one process-wide state; earlier tests fixed precision "no"
    overrides = [o for o in tiny_overrides(tmp_path, "fast", **{
        "train.max_steps": 2, "train.mixed_precision": "bf16", "model.text.gradient_checkpointing": "true",
        "model.vision.gradient_checkpointing": "true", "model.vision.name": "test_resnet",
        "model.vision.channels_last": "true", "data.eval_split": "''", "data.test_split": "null",
    }) if not o.startswith("model.vision.kwargs")]  # the tiny ViT's kwargs do not apply to a ResNet
    out = train.main(overrides)
    AcceleratorState._reset_state()
    assert out["steps"] == 2
    _assert_finite_losses(tmp_path / "fast", 2)


def test_compile_builds_and_steps(tmp_path, monkeypatch):
    """train.compile: torch.compile in place, run here with the "eager" backend, which checks that TorchDynamo
    captures our forward and backward without spending minutes in Inductor's CPU code generation."""
    compiled = []
    original = torch.nn.Module.compile

    def compile_eager(self, *args, **kwargs):
        compiled.append(type(self).__name__)
        return original(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eager)
    out = train.main(tiny_overrides(tmp_path, "compiled", **{
        "train.max_steps": 2, "train.compile": "true", "data.eval_split": "''", "data.test_split": "null"}))
    assert out["steps"] == 2 and compiled == ["MultimodalModel"]
    _assert_finite_losses(tmp_path / "compiled", 2)


def test_compile_turns_channels_last_off(tmp_path, monkeypatch):
    """Compiled, a channels-last CNN tower fails in the backward pass on GPUs (pytorch/pytorch#171622), so
    train.compile switches it back to NCHW and says so; the weights are stored NCHW again."""
    from engine.config import load_config
    from engine.trainer import Trainer

    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: None)
    overrides = tiny_overrides(tmp_path, "cl", **{"train.compile": "true", "model.vision.name": "test_resnet",
                                                  "model.vision.kwargs": "{}", "model.vision.channels_last": "true"})
    with pytest.warns(UserWarning, match="channels_last is turned off under train.compile"):
        trainer = Trainer(load_config(None, overrides))
    vision = trainer.model.vision
    conv = next(m.weight for m in vision.modules() if isinstance(m, torch.nn.Conv2d))
    assert not vision.channels_last and conv.is_contiguous()


def _assert_finite_losses(run: Path, steps: int) -> None:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == steps and all(torch.isfinite(torch.tensor(losses)))
