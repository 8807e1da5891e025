"""Merging saved checkpoints: streaming engine, mismatch policies, merge.py, greedy soup, Fisher, EMA/SWA,
multi-teacher distillation. Everything starts from the session's tiny trained run."""

import json
import shutil

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file, save_file

from crossfuse.commands import evaluate, merge, train
from engine.averaging import WeightAverager
from merging import MergeMismatchError, merge_checkpoints, save_merged
from merging.distill import teacher_target
from merging.recipe import MergeConfigError
from merging.scoring import held_out_scorer
from models import MultimodalModel


def _variant(tiny_run, dst, scale=0.05, seed=0, edit=None):
    """A copy of the tiny run whose floating weights are moved by seeded noise (a cheap "fine-tune")."""
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("checkpoints", "model_*"))
    path = dst / "model" / "model.safetensors"
    state = load_file(str(path))
    gen = torch.Generator().manual_seed(seed)
    state = {k: v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
             for k, v in state.items()}
    if edit is not None:
        edit(state)
    save_file(state, str(path))
    return dst


@pytest.fixture(scope="module")
def variants(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    return [_variant(tiny_run, root / f"v{i}", seed=i) for i in range(3)]


def test_linear_merge_is_mean_and_output_loads_and_evaluates(variants, tmp_path):
    state = merge_checkpoints(variants[:2], "linear")
    a, b = (load_file(str(v / "model" / "model.safetensors")) for v in variants[:2])
    for k, v in state.items():
        torch.testing.assert_close(v, (a[k] + b[k]) / 2)
    out = save_merged(state, variants[0], tmp_path / "merged", recipe={"method": "linear"})
    MultimodalModel.from_pretrained(out)
    res = evaluate.main([str(out), "--out", str(tmp_path / "e.json")])
    assert res["val"]["overall"]["n"] == 80 and (out / "merge.yaml").is_file()


def test_integer_buffers_are_not_averaged(variants, tmp_path):
    def counter(value):
        return lambda state: state.update(steps=torch.tensor([value, 7], dtype=torch.int64))

    m1 = _variant(variants[0], tmp_path / "i1", scale=0.0, edit=counter(1))
    m2 = _variant(variants[0], tmp_path / "i2", scale=0.0, edit=counter(4))
    for method, base in (("linear", None), ("ties", m1)):
        state = merge_checkpoints([m1, m2], method, base=base)
        assert state["steps"].dtype == torch.int64 and state["steps"].tolist() == [1, 7]


def test_mismatch_lists_every_tensor_and_policies_resolve_it(variants, tmp_path):
    keys = list(load_file(str(variants[0] / "model/model.safetensors")))
    gone = next(k for k in keys if k.startswith("text."))
    reshaped = next(k for k in keys if k.startswith("fusion.") and k.endswith("weight"))

    def edit(state):
        del state[gone]
        state[reshaped] = torch.zeros(3, 3)

    odd = _variant(variants[0], tmp_path / "odd", edit=edit)
    with pytest.raises(MergeMismatchError) as err:
        merge_checkpoints([variants[0], odd], "linear")
    assert f"missing:    {gone}" in str(err.value) and f"shape:      {reshaped}" in str(err.value)
    assert "keep_base" in str(err.value)
    policies = {gone: "keep_base", reshaped: "shape_match"}
    state = merge_checkpoints([variants[0], odd], "linear", policies=policies)
    ref = load_file(str(variants[0] / "model/model.safetensors"))
    assert torch.equal(state[gone], ref[gone]) and torch.equal(state[reshaped], ref[reshaped])
    assert gone not in merge_checkpoints([variants[0], odd], "linear", policies={gone: "skip", reshaped: "skip"})


def test_different_label_set_is_an_error(variants, tmp_path):
    other = _variant(variants[0], tmp_path / "lbl", scale=0.0)
    info = json.loads((other / "model/crossfuse.json").read_text())
    info["label_names"] = ["no", "yes"]
    (other / "model/crossfuse.json").write_text(json.dumps(info))
    with pytest.raises(MergeMismatchError, match="labels"):
        merge_checkpoints([variants[0], other], "linear")
    merge_checkpoints([variants[0], other], "linear", policies={"head.*": "keep_base", "fusion.*": "keep_base"})


def test_base_methods_require_a_base(variants):
    with pytest.raises(ValueError, match="needs a base"):
        merge_checkpoints(variants, "ties")


def test_merge_py_ties_and_bad_recipe(variants, tiny_run, tmp_path):
    recipe = tmp_path / "ties.yaml"
    recipe.write_text(f"method: ties\nmodels: [{variants[0]}, {variants[1]}]\nbase: {tiny_run}\n"
                      f"params: {{density: 0.5}}\noutput: {tmp_path / 'out'}\n")
    merge.main([str(recipe)])
    merged = MultimodalModel.from_pretrained(tmp_path / "out")
    assert merged.label_names == MultimodalModel.from_pretrained(tiny_run).label_names
    with pytest.raises(TypeError, match="Did you mean 'density'"):
        merge.main([str(recipe), "params.densty=0.3"])
    with pytest.raises(MergeConfigError, match="no models"):
        merge.main(["method=linear"])


def test_fisher_merge_from_data(variants, tmp_path):
    summary = merge.main(["method=fisher", f"models=[{variants[0]},{variants[1]}]", "fisher.samples=4",
                          f"output={tmp_path / 'fisher'}"])
    assert summary["method"] == "fisher"
    state = load_file(str(tmp_path / "fisher/model/model.safetensors"))
    a, b = (load_file(str(v / "model/model.safetensors")) for v in variants[:2])
    k = next(k for k in state if k.startswith("head.") and k.endswith("weight"))
    lo, hi = torch.minimum(a[k], b[k]), torch.maximum(a[k], b[k])
    assert ((state[k] >= lo - 1e-6) & (state[k] <= hi + 1e-6)).all()  # a per-entry convex combination
    assert not torch.allclose(state[k], (a[k] + b[k]) / 2)  # but not the plain mean


def test_greedy_soup_never_below_best_single(variants, tiny_run, tmp_path):
    bad = _variant(tiny_run, tmp_path / "bad", scale=1.0, seed=9)  # a model the soup should leave out
    models = [*variants[:2], bad]
    summary = merge.main(["method=greedy_soup", f"models=[{','.join(map(str, models))}]",
                          f"output={tmp_path / 'soup'}"])
    score = held_out_scorer(tiny_run, "val")
    singles = [score(MultimodalModel.from_pretrained(m)) for m in models]
    soup = score(MultimodalModel.from_pretrained(tmp_path / "soup"))
    assert soup >= max(singles) and soup == pytest.approx(summary["score"])
    assert summary["chosen"][0] == str(models[max(range(len(models)), key=singles.__getitem__)] / "model")


def test_weight_averager_math():
    net = torch.nn.Linear(2, 2)
    ema = WeightAverager(net, "ema", decay=0.5)
    swa = WeightAverager(net, "swa", start_step=2, every=2)
    seen = []
    for step in range(1, 5):
        with torch.no_grad():
            net.weight.fill_(float(step))
        ema.update(net, step)
        if swa.update(net, step):
            seen.append(step)
    assert seen == [2, 4] and torch.allclose(swa.module.weight, torch.full((2, 2), 3.0))
    # EMA: first update copies (1), then 0.5 * avg + 0.5 * w: 1.5, 2.25, 3.125
    assert torch.allclose(ema.module.weight, torch.full((2, 2), 3.125))
    with pytest.raises(ValueError, match="ema or swa"):
        WeightAverager(net, "polyak")


def test_training_saves_and_evaluates_ema(tmp_path):
    doc = train.main(tiny_overrides(tmp_path, "ema", **{"train.max_steps": 3, "train.weight_averaging.name": "ema",
                                                        "train.weight_averaging.decay": 0.5,
                                                        "eval.modality_ablation": "false"}))
    wa = doc["weight_averaging"]
    assert wa["updates"] == 3 and set(wa["results"]) == {"val", "test"}
    ema = MultimodalModel.from_pretrained(tmp_path / "ema" / "model_ema")
    best = MultimodalModel.from_pretrained(tmp_path / "ema")
    assert not torch.equal(ema.head.proj.weight if hasattr(ema.head, "proj") else next(ema.head.parameters()),
                           best.head.proj.weight if hasattr(best.head, "proj") else next(best.head.parameters()))
    assert json.loads((tmp_path / "ema" / "metrics_ema.json").read_text())["updates"] == 3


def test_teacher_target_averages_tempered_logits():
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    t = teacher_target([z1, z2], [0.25, 0.75], [1.0, 4.0], temperature=2.0)
    torch.testing.assert_close(torch.softmax(t / 2.0, -1), torch.softmax(0.25 * z1 / 1.0 + 0.75 * z2 / 4.0, -1))


def test_multi_teacher_distillation_trains(variants, tmp_path):
    teachers = f"[{variants[0]},{variants[1]}]"
    doc = train.main(tiny_overrides(tmp_path, "student", **{
        "train.max_steps": 2, "train.task": "multi_teacher_distill", "eval.modality_ablation": "false",
        "train.task_params": f"{{teachers: {teachers}, temperatures: [1.0, 2.0], alpha: 0.3, feature_weight: 0.1}}"}))
    logged = [json.loads(line) for line in (tmp_path / "student" / "log.jsonl").read_text().splitlines()]
    assert all(r["train/kd_loss"] >= 0 and "train/feature_loss" in r for r in logged if "train/loss" in r)
    assert doc["results"]["val"]["overall"]["n"] == 80
    with pytest.raises(FileNotFoundError, match="teacher"):
        train.main(tiny_overrides(tmp_path, "s2", **{"train.max_steps": 1, "train.task": "multi_teacher_distill",
                                                     "train.task_params": "{teachers: [nowhere]}"}))


def _mean_entropy(path, tiny_run) -> float:
    from merging.adamerging import prediction_entropy
    from merging.scoring import split_loader

    net = MultimodalModel.from_pretrained(path).eval()
    with torch.no_grad():
        values = [prediction_entropy(net(b)["logits"]) for b in split_loader(tiny_run, "train", train=True)]
    return float(torch.stack(values).mean())


def test_regmean_merge_from_data(variants, tmp_path):
    merge.main(["method=regmean", f"models=[{variants[0]},{variants[1]}]", "activations.samples=24",
                f"output={tmp_path / 'rm'}"])
    state = load_file(str(tmp_path / "rm/model/model.safetensors"))
    a, b = (load_file(str(v / "model/model.safetensors")) for v in variants[:2])
    k = next(k for k in state if k.startswith("head.") and k.endswith("weight"))
    assert not torch.allclose(state[k], (a[k] + b[k]) / 2, atol=1e-4)  # a linear weight: the closed form
    bias = k.removesuffix("weight") + "bias"
    torch.testing.assert_close(state[bias], (a[bias] + b[bias]) / 2)  # anything else: the mean
    MultimodalModel.from_pretrained(tmp_path / "rm")


def test_adamerging_lowers_entropy_against_its_starting_coefficients(variants, tiny_run, tmp_path):
    models = f"models=[{variants[0]},{variants[1]}]"
    summary = merge.main(["method=adamerging", models, f"base={tiny_run}", "adamerging.steps=8",
                          "adamerging.lr=0.05", f"output={tmp_path / 'ada'}"])
    start = merge.main(["method=task_arithmetic", models, f"base={tiny_run}", "params.scale=0.3",  # lambda = init
                        f"output={tmp_path / 'start'}"])
    assert start["method"] == "task_arithmetic" and len(summary["entropy"]) == 2
    assert _mean_entropy(tmp_path / "ada", tiny_run) < _mean_entropy(tmp_path / "start", tiny_run) - 1e-3
    coefficients = summary["coefficients"]
    assert len(coefficients) > 10 and all(0.0 <= x <= 1.0 for v in coefficients.values() for x in v)  # layer-wise
    assert any(abs(x - 0.3) > 1e-3 for v in coefficients.values() for x in v)


def test_adamerging_with_heads_reads_each_example_with_its_own_models_head(variants, tiny_run):
    from merging.adamerging import AdaMergingTask, prediction_entropy
    from merging.scoring import split_loader

    task = AdaMergingTask([str(v) for v in variants[:2]], str(tiny_run), granularity="task", heads=True)
    net = MultimodalModel.from_pretrained(tiny_run)
    task.setup(net)
    assert not any(n.startswith("head.") for n in task.names)  # heads are not merged
    batch = next(iter(split_loader(tiny_run, "train", train=True)))
    batch["lang"] = torch.arange(batch["labels"].shape[0]) % 2  # examples of model 0 and of model 1
    loss = task(net, batch)["loss"]
    merged = {k: v for k, v in task.merged(task.extras["coefficients"]()).items()}
    expected = 0.0
    for k, variant in enumerate(variants[:2]):
        own = MultimodalModel.from_pretrained(variant).eval()
        own.load_state_dict(merged, strict=False)  # merged towers and fusion, model k's head
        rows = batch["lang"] == k
        with torch.no_grad():
            logits = own(batch)["logits"][rows]
        expected += prediction_entropy(logits) * rows.sum() / rows.numel()
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()  # the coefficients learn from it
    assert task.extras["coefficients"].value.grad.abs().sum() > 0
