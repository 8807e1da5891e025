"""Contrastive alignment over the global batch: two gloo processes (configs/accelerate/cpu_2proc.yaml) compute the
loss, gradients and retrieval of one process on the concatenated batch (tests/contrastive_worker.py), and a
2-process training run follows the loss curve of a 1-process run with the doubled batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from crossfuse.commands import train

ROOT = Path(__file__).resolve().parent.parent
ATOL, RTOL = 1e-5, 1e-4


def _run(cmd: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def _launch_two(*args: str) -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu_2proc.yaml",
            "--main_process_port", str(port), *args]


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> dict[int, dict]:
    """The worker's results as one process and as two."""
    out = tmp_path_factory.mktemp("worker")
    _run([sys.executable, "tests/contrastive_worker.py", str(out / "one.json")])
    _run(_launch_two("tests/contrastive_worker.py", str(out / "two.json")))
    results = {1: json.loads((out / "one.json").read_text()), 2: json.loads((out / "two.json").read_text())}
    assert results[1]["world"] == 1 and results[2]["world"] == 2
    return results


def _max_grad_diff(a: dict, b: dict) -> float:
    assert a["grads"].keys() == b["grads"].keys()
    return max((torch.tensor(a["grads"][k]) - torch.tensor(b["grads"][k])).abs().max().item() for k in a["grads"])


@pytest.mark.parametrize("negatives", ["global", "global_rows"])
@pytest.mark.parametrize("dedupe", [True, False])
def test_two_processes_have_the_loss_and_gradients_of_one(worker, negatives, dedupe):
    """8 kept pairs split 5/3 over two processes: both report the loss of one process on all 8, and after DDP's
    averaging every parameter gradient (towers, projections, temperature) is the one-process gradient."""
    key = f"contrastive/{negatives}/dedupe={dedupe}"
    one, two = worker[1]["train"][key], worker[2]["train"][key]
    assert one["pairs"] == two["pairs"] == 8.0  # the effective batch: every process's pairs
    assert two["loss"] == pytest.approx([one["loss"][0]] * 2, abs=ATOL)  # the same value on both processes
    for name, grad in one["grads"].items():
        torch.testing.assert_close(torch.tensor(two["grads"][name]), torch.tensor(grad), atol=ATOL, rtol=RTOL,
                                   msg=name)
    assert {"extras.align.logit_scale", "model.text.weight", "model.vision.weight"} <= set(one["grads"])


@pytest.mark.parametrize("dedupe", [True, False])
def test_per_process_negatives_are_another_objective(worker, dedupe):
    """negatives=process (the loss before this change): each process contrasts its own 5 or 3 pairs, so neither
    the loss nor the gradients are those of one process; the comparison above would fail on it."""
    key = f"contrastive/process/dedupe={dedupe}"
    one, two = worker[1]["train"][key], worker[2]["train"][key]
    assert two["pairs"] == 5.0 and abs(two["loss"][0] - one["loss"][0]) > 0.1
    assert _max_grad_diff(one, two) > 0.1


def test_crossmodal_distillation_averages_over_every_process(worker):
    """The distillation MSE over 8 paired rows split 5/3 is their mean, not the mean of the two processes' means."""
    one, two = worker[1]["train"]["crossmodal_distill"], worker[2]["train"]["crossmodal_distill"]
    assert two["loss"] == pytest.approx([one["loss"][0]] * 2, abs=ATOL)
    assert _max_grad_diff(one, two) < ATOL and "extras.projection.weight" in one["grads"]


@pytest.mark.parametrize("task", ["contrastive", "crossmodal_distill"])
def test_retrieval_from_two_processes_ranks_the_whole_split(worker, task):
    """37 rows, batches of 8 per process: Accelerate pads the last batch, gather_for_metrics drops the padding, and
    every recall equals the one-process value; ranking within a process's own shard would not."""
    one, two = worker[1]["eval"][task], worker[2]["eval"][task]
    assert one["n"] == two["n"] == 37
    assert two == pytest.approx(one, abs=1e-6)
    if task == "contrastive":
        assert worker[2]["eval"]["contrastive_own_shard_i2t_r@1"] != pytest.approx(one["i2t_r@1"], abs=1e-3)


def test_two_process_contrastive_run_follows_the_one_process_loss_curve(tmp_path):
    """train.py under `accelerate launch` with 2 processes of batch 8 against one process of batch 16: the same
    logged loss (the global batch's) and effective batch at every step, the same saved projections and temperature,
    and the same validation retrieval.

    Deterministic setting: the text tower frozen (so in eval mode, no dropout; the image tower, the projections
    and the temperature train), fusion and head dropout 0 (they run, frozen, and would draw random numbers)."""
    settings = {"train.task": "contrastive", "train.task_params": "{dim: 16}", "train.best_metric": "r@1_mean",
                "model.fusion.name": "concat", "model.fusion.dropout": 0, "model.head.dropout": 0,
                "model.text.freeze": "true", "train.max_steps": 4, "eval.modality_ablation": "false",
                "data.test_split": "null", "run.seed": 3}
    train.main(tiny_overrides(tmp_path, "one", **settings))
    _run(_launch_two("train.py", *tiny_overrides(tmp_path, "two", **settings, **{"train.batch_size": 8})))

    def curve(run: str) -> list[tuple[float, float]]:
        rows = [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        return [(r["train/loss"], r["train/pairs"]) for r in rows if "train/loss" in r]

    one, two = curve("one"), curve("two")
    assert len(one) == len(two) == 4
    assert [p for _, p in two] == [p for _, p in one]  # the 2-process run contrasts all pairs of both processes
    assert [loss for loss, _ in two] == pytest.approx([loss for loss, _ in one], abs=ATOL)
    # and the same updates: the projections and temperature both runs saved
    w1 = load_file(str(tmp_path / "one" / "model" / "task_state.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model" / "task_state.safetensors"))
    assert w1.keys() == w2.keys() and "align.logit_scale" in w1
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=ATOL, rtol=RTOL, msg=key)
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())["results"]["val"]["overall"]
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())["results"]["val"]["overall"]
    assert a["n"] == b["n"] == 40
    assert b == pytest.approx(a, abs=1e-6)
