"""The contract between the loop and what it optimises, for every registered task: trained through the Trainer,
checkpointed, resumed exactly, and evaluated by evaluate.py as at the end of training; and the loop's promise not
to read from the device between log steps."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_overrides

from crossfuse.commands import evaluate, train
from engine.tasks import Task, TaskModel, create_task, list_tasks
from engine.trainer import Trainer

# Options and the metric that picks the best model, per registered task: a task added without an entry fails below.
TASK_SETUPS = {
    "classification": lambda runs: ({}, "accuracy"),
    "contrastive": lambda runs: ({"dim": 16}, "r@1_mean"),
    "distill": lambda runs: ({"teacher": str(runs["tiny"]), "feature_weight": 0.5}, "accuracy"),
    "crossmodal_distill": lambda runs: ({"teacher": str(runs["clip"])}, "i2t_r@1"),
    "multi_teacher_distill": lambda runs: ({"teachers": [str(runs["tiny"]), str(runs["tiny"])]}, "accuracy"),
    "multilingual_distill": lambda runs: ({"teacher": str(runs["tiny"])}, "accuracy"),
    "adamerging": lambda runs: ({"models": [str(runs["tiny"]), str(runs["tiny"])], "base": str(runs["tiny"])},
                                "accuracy"),
}
STEPS = {"train.max_steps": 4, "train.save_every": 2, "train.eval_every": 2, "eval.modality_ablation": "false",
         "run.seed": 3}


def test_every_registered_task_has_a_contract_test():
    assert set(list_tasks()) == set(TASK_SETUPS)


def _rows(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("train/samples_per_s", "train/data_wait_frac")} for r in rows]


@pytest.mark.parametrize("name", sorted(TASK_SETUPS))
def test_task_trains_checkpoints_resumes_and_evaluates(name, tiny_run, contrastive_run, tmp_path, monkeypatch):
    params, metric = TASK_SETUPS[name]({"tiny": tiny_run, "clip": contrastive_run})
    options = {**STEPS, "train.task": name, "train.task_params": json.dumps(params), "train.best_metric": metric}
    whole = train.main(tiny_overrides(tmp_path, "whole", **options))
    assert whole["steps"] == 4 and metric in whole["results"]["val"]["overall"]

    # The same run stopped after step 2 (as a pre-emption does), then resumed from its checkpoint.
    monkeypatch.setattr(Trainer, "_stop_requested", lambda self, log_step: self.state["step"] == 2)
    cut = train.main(tiny_overrides(tmp_path, "cut", **options))
    assert cut["steps"] == 2 and cut["checkpoint"].endswith("step_00000002")
    monkeypatch.undo()
    resumed = train.main(tiny_overrides(tmp_path, "cut", **options) + ["--resume", "latest"])
    assert resumed == whole and _rows(tmp_path / "cut") == _rows(tmp_path / "whole")

    again = evaluate.main([str(tmp_path / "cut"), "--out", str(tmp_path / "eval.json")])
    assert again["val"]["overall"][metric] == pytest.approx(whole["results"]["val"]["overall"][metric])


def test_task_extras_train_and_teachers_stay_out_of_the_prepared_module(contrastive_run):
    from models import MultimodalModel

    task = create_task("crossmodal_distill", teacher=str(contrastive_run))
    student = MultimodalModel.from_pretrained(contrastive_run)
    task.setup(student)
    trainable = {n for n, p in TaskModel(student, task).named_parameters() if p.requires_grad}
    assert {"extras.projection.weight", "extras.projection.bias"} <= trainable
    assert all(n.startswith(("model.vision.", "extras.")) for n in trainable)  # only the image tower learns
    teacher = {n for n, _ in task.named_parameters() if n.startswith("teacher")}
    assert teacher and not teacher & {n.removeprefix("model.") for n in trainable}
    assert isinstance(task, Task) and all(not p.requires_grad for p in task.teacher.parameters())


class _Reads:
    """Counts every way a tensor's value reaches the host (a device-to-host read a GPU would wait for).

    Not counted: reads in the data pipeline (CPU tensors before the batch reaches the device) and transformers'
    SDPA mask check (``masking_utils._ignore_bidirectional_mask_sdpa`` reads ``attention_mask.all()`` once per
    text-tower forward to pick the flash kernel when nothing is padded; it is traced away under ``train.compile``).
    Everything else, in our code or in the libraries it calls, is counted.
    """

    NAMES = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__")
    EXEMPT = ("torch/utils/data/", "transformers/masking_utils.py")

    def __init__(self, monkeypatch):
        import traceback

        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                stack = "".join(frame.filename for frame in traceback.extract_stack(limit=40))
                if not any(part in stack for part in self.EXEMPT):
                    self.count += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


def test_the_loop_reads_nothing_from_the_device_between_log_steps(tmp_path, monkeypatch):
    reads = _Reads(monkeypatch)
    at_step_start: list[int] = []
    original = Trainer._step

    def step(self, batch):
        at_step_start.append(reads.count)
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_step", step)
    train.main(tiny_overrides(tmp_path, "sync", **{"train.max_steps": 8, "run.log_every": 4,
                                                   "data.eval_split": "''", "data.test_split": "null"}))
    per_step = [b - a for a, b in zip(at_step_start, at_step_start[1:])]  # reads during step k and after it
    assert len(per_step) == 7
    log_steps = {3}  # the read after step 4 (index 3) is the log step's one transfer
    assert all(n == 0 for i, n in enumerate(per_step) if i not in log_steps), per_step
    assert 0 < per_step[3] <= 2  # one batched read of the logged values (and the stop check)
