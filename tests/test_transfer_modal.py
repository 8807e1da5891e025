"""Cross-modal transfer: contrastive alignment, retrieval metrics, zero-shot transfer, cross-modal distillation."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_overrides
from transformers import AutoTokenizer

from crossfuse.commands import train
from engine.tasks import create_task, list_tasks
from transfer.contrastive import AlignmentHeads, caption_ids, clip_loss, pair_mask, recall_at_k
from transfer.zero_shot import (
    caption_classes,
    chance_rate,
    encode_texts,
    load_aligned,
    prototype_classify,
    transfer_head,
)

RETRIEVAL_KEYS = {f"{d}_r@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}


def test_transfer_tasks_are_registered():
    assert {"contrastive", "distill", "crossmodal_distill"} <= set(list_tasks())
    with pytest.raises(KeyError, match="Did you mean 'contrastive'"):
        create_task("contrastiv")
    with pytest.raises(ValueError, match="pairs must be one of"):
        create_task("contrastive", pairs=True)  # YAML's `true` is a bool, not the option "positive"
    with pytest.raises(ValueError, match=r"negatives must be one of \['global', 'global_rows', 'process'\]"):
        create_task("contrastive", negatives="local")
    assert create_task("contrastive").negatives == "global"  # the global batch unless asked otherwise


def test_contrastive_run_reports_retrieval_and_saves_its_projections(contrastive_run):
    metrics = json.loads((contrastive_run / "metrics.json").read_text())
    val = metrics["results"]["val"]["overall"]
    assert RETRIEVAL_KEYS <= set(val) and metrics["best_metric"] == "r@1_mean"
    assert val["n"] == 16 // 2 * 5  # the true pairs of the val split, five languages
    assert 0.0 < val["chance_r@1"] < 1.0 and val["i2t_r@1"] <= val["i2t_r@5"] <= val["i2t_r@10"]
    model, heads = load_aligned(contrastive_run)
    assert heads.text.out_features == 24 and heads.image.in_features == model.vision.dim
    tok = AutoTokenizer.from_pretrained(contrastive_run / "model" / "tokenizer")
    emb = encode_texts(model, heads, tok, ["there is a red circle", "there is a blue square"])
    assert emb.shape == (2, 24) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_load_aligned_refuses_a_run_without_alignment(tiny_run):
    with pytest.raises(FileNotFoundError, match="train.task=contrastive"):
        load_aligned(tiny_run)


def test_clip_loss_is_low_when_aligned_and_dedupe_spares_repeated_captions():
    e = F.normalize(torch.randn(6, 16), dim=-1)
    scale = torch.tensor(np.log(100.0))
    assert clip_loss(e, e, scale).item() < clip_loss(e, e.roll(1, 0), scale).item()
    torch.manual_seed(0)
    caption = torch.tensor([0, 1, 2, 0, 1, 2])  # rows i and i+3: one caption, two slightly different images
    image = F.normalize(torch.cat([e[:3], e[:3]]) + 0.1 * torch.randn(6, 16), dim=-1)
    grads = []
    for dedupe in (caption, None):
        text = torch.cat([e[:3], e[:3]]).requires_grad_(True)
        clip_loss(text, image, scale, dedupe).backward()
        grads.append(text.grad.norm().item())
    assert grads[0] < 0.5 * grads[1]  # without dedupe the twin captions are pushed apart as false negatives


def test_every_negatives_mode_is_the_same_loss_in_one_process():
    """Without a process group the gathered batch is the process's own: one loss, whatever ``negatives`` says
    (two processes: tests/test_contrastive_distributed.py)."""
    torch.manual_seed(0)
    text, image = F.normalize(torch.randn(7, 16), dim=-1), F.normalize(torch.randn(7, 16), dim=-1)
    caption, scale = torch.tensor([0, 1, 2, 0, 3, 4, 1]), torch.tensor(2.5)
    for ids in (caption, None):
        values = [clip_loss(text, image, scale, ids, negatives=n).item() for n in ("global", "global_rows", "process")]
        assert values == pytest.approx([values[0]] * 3, abs=1e-6)


def test_clip_loss_learns_a_shared_space_from_paired_views():
    """Two linear views of one latent: the alignment heads must recover the pairing well above chance."""
    torch.manual_seed(0)
    z = torch.randn(256, 8)
    text, image = z @ torch.randn(8, 20), z @ torch.randn(8, 12)
    heads = AlignmentHeads(20, 12, 16, 0.07)
    opt = torch.optim.Adam(heads.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        loss = clip_loss(F.normalize(heads.text(text), dim=-1), F.normalize(heads.image(image), dim=-1),
                         heads.logit_scale)
        loss.backward()
        opt.step()
    ids = torch.arange(256)
    r = recall_at_k(F.normalize(heads.image(image), dim=-1), F.normalize(heads.text(text), dim=-1), ids, ids)
    assert r[1] > 0.5 and r[10] > 0.9  # chance: 1/256 and 10/256


def test_recall_counts_any_item_with_the_same_caption():
    q = torch.eye(3)
    gallery = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    r = recall_at_k(q, gallery, torch.tensor([0, 1, 2]), torch.tensor([1, 0, 2]), ks=(1, 2))
    assert r == {1: 1.0, 2: 1.0}
    r = recall_at_k(q, gallery, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), ks=(1, 2))
    assert r[1] == pytest.approx(1 / 3) and r[2] == 1.0


def test_pair_mask_and_caption_ids():
    batch = {"text_present": torch.tensor([1, 1, 1, 0]), "image_present": torch.tensor([1, 1, 0, 1]),
             "labels": torch.tensor([1, 0, 1, 1])}
    assert pair_mask(batch, "positive").tolist() == [True, False, False, False]
    assert pair_mask(batch, "all").tolist() == [True, True, False, False]
    ids = torch.tensor([[2, 5, 7, 0], [2, 5, 7, 9], [2, 5, 7, 0]])
    mask = (ids > 0).long()
    cap = caption_ids(ids, mask)
    assert cap[0] == cap[2] and cap[0] != cap[1]
    assert caption_ids(ids[:1, :3], mask[:1, :3])[0] == cap[0]  # padding length does not matter


def test_zero_shot_helpers():
    assert caption_classes(["there is a red circle", "a blue cross", "nothing"], ["red", "blue"]).tolist() == [0, 1, -1]
    protos = torch.eye(3)
    assert prototype_classify(torch.tensor([[0.1, 0.9, 0.0], [0.0, 0.2, 0.7]]), protos).tolist() == [1, 2]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    centres = torch.randn(3, 8) * 3
    x_image = centres[y] + torch.randn(200, 8) * 0.3
    x_text = centres[y] + torch.randn(200, 8) * 0.3  # same space: a head fitted on images works on texts
    assert transfer_head(x_image, y, x_text, y) > 0.9
    assert transfer_head(x_image, y, torch.randn(200, 8) * 3, y) < 0.7
    assert chance_rate(np.array([0, 0, 1])) == pytest.approx(2 / 3)


def test_crossmodal_distill_trains_an_image_student_from_the_aligned_text_teacher(contrastive_run, tmp_path):
    out = tmp_path / "runs"
    train.main(tiny_overrides(out, "xmd", **{
        "train.task": "crossmodal_distill", "train.task_params": f"{{teacher: {contrastive_run}}}",
        "train.max_steps": 3, "train.best_metric": "i2t_r@1"}))
    metrics = json.loads((out / "xmd" / "metrics.json").read_text())["results"]["val"]["overall"]
    assert {"i2t_r@1", "i2t_r@5", "cosine", "chance_r@1"} <= set(metrics)
    assert -1.0 <= metrics["cosine"] <= 1.0 and metrics["n"] == 40
    logged = [json.loads(line) for line in (out / "xmd" / "log.jsonl").read_text().splitlines()]
    assert [r["train/pairs"] > 0 for r in logged if "train/loss" in r] == [True] * 3


def test_crossmodal_distill_needs_a_text_teacher_space(tiny_run, tmp_path):
    task = create_task("crossmodal_distill", teacher=str(tiny_run))
    from models import MultimodalModel

    student = MultimodalModel.from_pretrained(tiny_run)
    task.setup(student)
    assert task.extras["projection"].out_features == student.text.dim  # no alignment: the teacher's text space
    assert not any(p.requires_grad for part in (student.text, student.fusion, student.head) for p in part.parameters())
    only_image = {**student.model_cfg, "fusion": {**student.model_cfg["fusion"], "name": "image_only"}}
    with pytest.raises(ValueError, match="model.fusion.name=concat"):
        task.setup(MultimodalModel(only_image, 2, image_overrides=student.image_overrides))
