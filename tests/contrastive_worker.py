"""Launched by tests/test_contrastive_distributed.py as one process (``python``) or two (``accelerate launch`` with
configs/accelerate/cpu_2proc.yaml): the same global batch and split, each process taking its contiguous share.

For each contrastive ``negatives`` mode (and cross-modal distillation) it runs the real task's forward through the
prepared (DDP) module on this process's rows of a fixed 12-row batch whose kept pairs are spread unevenly over the
processes, then backward, and records the loss and every parameter gradient after DDP's averaging. It also
evaluates retrieval on a 37-row split (not a multiple of the processes, so Accelerate pads the last batch) through
the task's ``evaluate``, and, as a contrast, the recall of each process's own shard. Process 0 writes the JSON.
"""

import json
import os
import sys
from types import SimpleNamespace

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from engine.distributed import multi_process_cpu
from engine.tasks import TaskModel
from transfer.contrastive import AlignmentHeads, ContrastiveTask, recall_at_k
from transfer.distill import CrossModalDistillTask

TEXT_DIM, IMAGE_DIM, DIM = 10, 6, 8


class TwoTowers(nn.Module):
    """Stands in for a MultimodalModel: linear "towers" over raw features, returning pooled vectors."""

    def __init__(self):
        super().__init__()
        self.text, self.vision = nn.Linear(TEXT_DIM, TEXT_DIM), nn.Linear(IMAGE_DIM, IMAGE_DIM)

    def forward(self, batch, drop=()):
        return {"text": SimpleNamespace(pooled=self.text(batch["text_x"])),
                "image": SimpleNamespace(pooled=self.vision(batch["image_x"]))}


def rows(n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` rows of a batch: raw features, captions (5 distinct, so some repeat), labels and presence flags."""
    g = torch.Generator().manual_seed(seed)
    caption = torch.randint(1, 6, (n,), generator=g)
    input_ids = torch.stack([caption, caption + 10, torch.zeros_like(caption)], -1)
    return {"text_x": torch.randn(n, TEXT_DIM, generator=g), "image_x": torch.randn(n, IMAGE_DIM, generator=g),
            "input_ids": input_ids, "attention_mask": (input_ids > 0).long(),
            "labels": (torch.rand(n, generator=g) < 0.6).long(), "text_present": torch.ones(n, dtype=torch.long),
            "image_present": torch.ones(n, dtype=torch.long), "index": torch.arange(n)}


def build(task, seed: int = 1) -> TaskModel:
    torch.manual_seed(seed)
    model = TwoTowers()
    if isinstance(task, ContrastiveTask):
        task.extras["align"] = AlignmentHeads(TEXT_DIM, IMAGE_DIM, DIM, 0.07)
    else:  # a fixed "teacher": the normalised text features through a fixed map
        teacher_map = torch.randn(TEXT_DIM, DIM)
        task.teacher = nn.Identity()
        task.compute_targets = lambda batch: torch.nn.functional.normalize(batch["text_x"] @ teacher_map, dim=-1)
        task.extras["projection"] = nn.Linear(IMAGE_DIM, DIM)
        model.text.requires_grad_(False)  # as CrossModalDistillTask.setup freezes it: only the image side learns
    return TaskModel(model, task)


def step(acc: Accelerator, task, batch) -> dict:
    module = acc.prepare(build(task))
    module.train()
    out = module(batch)
    acc.backward(out["loss"])
    grads = {name: p.grad.tolist() for name, p in acc.unwrap_model(module).named_parameters() if p.grad is not None}
    losses = acc.gather(out["loss"].detach().reshape(1)).tolist()
    return {"loss": losses, "grads": grads, "pairs": float(out["pairs"])}


def main() -> None:
    acc = Accelerator(cpu=multi_process_cpu())
    rank, world = acc.process_index, acc.num_processes
    batch = rows(12, seed=0)
    batch["labels"] = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1])  # 5 true pairs in rows 0-5, 3 in 6-11
    share = {k: v[rank * 12 // world:(rank + 1) * 12 // world] for k, v in batch.items()}
    result = {"world": world, "train": {}}
    for negatives in ("global", "global_rows", "process"):
        for dedupe in (True, False):
            task = ContrastiveTask(dim=DIM, negatives=negatives, dedupe=dedupe)
            result["train"][f"contrastive/{negatives}/dedupe={dedupe}"] = step(acc, task, share)
    result["train"]["crossmodal_distill"] = step(acc, CrossModalDistillTask(teacher="stub", cache=False), share)

    split = [{k: v[i] for k, v in rows(37, seed=3).items()} for i in range(37)]
    loader = acc.prepare(DataLoader(split, batch_size=8))  # 37 rows: the last batch is padded on some process
    result["eval"] = {}
    for name, task in (("contrastive", ContrastiveTask(dim=DIM, pairs="all")),
                       ("crossmodal_distill", CrossModalDistillTask(teacher="stub", pairs="all", cache=False))):
        module = acc.prepare(build(task))
        result["eval"][name] = task.evaluate(acc, module, loader)["overall"]
    # what ranking against each process's own shard would give (the mistake the gathered split avoids)
    task = ContrastiveTask(dim=DIM, pairs="all")
    module = build(task).eval()
    with torch.no_grad():
        mine = {k: torch.stack([row[k] for row in split[rank::world]]) for k in split[0]}  # any shard will do
        text, image = task.embed(module.model(mine))
    ids = torch.as_tensor(mine["input_ids"][:, 0])
    result["eval"]["contrastive_own_shard_i2t_r@1"] = recall_at_k(image, text, ids, ids)[1]

    if acc.is_main_process:
        with open(sys.argv[1], "w") as f:
            json.dump(result, f)
    acc.wait_for_everyone()
    acc.end_training()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo can abort at interpreter exit (docs of the machine: ENVIRONMENT.md)


if __name__ == "__main__":
    main()
