"""Deployment exports on the tiny run: every export kind loads through one loader and evaluates; int8 (torchao)
round trips exactly and old-format int8 folders still load; deploy/ calls no deprecated or private torch API;
pruning reaches its sparsity and a recovery fine-tune keeps pruned weights at zero; clear user errors."""

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from crossfuse.commands import evaluate, export
from deploy import MANIFEST_NAME, list_exports, load_for_inference
from deploy.parity import max_logit_difference, real_batches
from deploy.prune import prunable_layers, prune_model
from deploy.quantize import WEIGHTS_NAME, linear_names, quantize_linears, quantized_layers
from models import MultimodalModel
from models.errors import ModelNotAvailableError


@pytest.fixture(scope="module")
def batches(tiny_run):
    return real_batches(tiny_run, 2, batch_size=40)


@pytest.mark.parametrize("kind", list_exports())
def test_every_export_kind_evaluates_like_the_float_model(tiny_run, tmp_path, batches, kind):
    out = tmp_path / kind
    manifest = export.main([str(tiny_run), "--kind", kind, "--out", str(out), "--sparsity", "0.1"])
    assert json.loads((out / MANIFEST_NAME).read_text())["kind"] == kind == manifest["kind"]
    model = load_for_inference(out)
    float_model = MultimodalModel.from_pretrained(tiny_run).eval()
    # int8 and 10% pruning move logits a little; ONNX Runtime only by float rounding.
    assert max_logit_difference(model, float_model, batches) < {"onnx": 1e-4, "int8": 0.1, "onnx-int8": 0.1,
                                                                  "pruned": 0.5}[kind]
    results = evaluate.main([str(out), "--out", str(tmp_path / "eval.json")])
    assert results["val"]["overall"]["n"] == 80 and set(results["val"]["ablation"]) == {"no_text", "no_image"}
    if kind == "onnx":  # same predictions => same metrics as the run's own evaluation
        trained = json.loads((tiny_run / "metrics.json").read_text())["results"]
        assert results["val"]["overall"]["accuracy"] == pytest.approx(trained["val"]["overall"]["accuracy"])
        assert results["val"]["ablation"]["no_text"]["auroc"] == pytest.approx(
            trained["val"]["ablation"]["no_text"]["auroc"], abs=1e-4)


def test_onnx_int8_graph_has_integer_weight_matmuls_and_records_its_agreement(tiny_run, tmp_path, batches):
    import onnx

    manifest = export.main([str(tiny_run), "--kind", "onnx-int8", "--out", str(tmp_path / "q")])
    details = manifest["details"]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q" / "model.onnx")).graph.node]
    assert details["integer_matmul_nodes"] == ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") > 10
    assert "DynamicQuantizeLinear" in ops  # activations are quantized at run time
    assert not (tmp_path / "q" / "model.float.onnx").exists()
    float_onnx = tmp_path / "f"
    export.main([str(tiny_run), "--kind", "onnx", "--out", str(float_onnx), "--parity-batches", "0"])
    assert (tmp_path / "q" / "model.onnx").stat().st_size < (float_onnx / "model.onnx").stat().st_size
    parity = details["parity"]
    assert "ok" not in parity and 0 < parity["max_abs_logit_diff"] < 0.1 and parity["prediction_agreement"] >= 0.9
    assert parity["max_abs_logit_diff"] == pytest.approx(
        max_logit_difference(load_for_inference(tmp_path / "q"), MultimodalModel.from_pretrained(tiny_run).eval(),
                             real_batches(tiny_run, 2)))
    seven = export.main([str(tiny_run), "--kind", "onnx-int8", "--reduce-range", "--out", str(tmp_path / "q7")])
    assert "7-bit" in seven["details"]["scheme"] and "8-bit" in details["scheme"]
    assert seven["details"]["parity"]["max_abs_logit_diff"] != parity["max_abs_logit_diff"]  # other weights


@pytest.mark.parametrize("scheme", ["weight-only", "dynamic"])
def test_int8_quantizes_the_chosen_parts_and_round_trips_exactly(tiny_run, tmp_path, batches, scheme):
    manifest = export.main([str(tiny_run), "--kind", "int8", "--scheme", scheme, "--out", str(tmp_path / "q")])
    assert manifest["details"]["backend"] == "torchao" and manifest["details"]["scheme"] == scheme
    loaded = load_for_inference(tmp_path / "q")
    assert {n.split(".")[0] for n in quantized_layers(loaded)} == {"text", "fusion", "head"}
    assert not any(name.startswith("vision") for name in quantized_layers(loaded))
    assert sorted(quantized_layers(loaded)) == sorted(manifest["details"]["quantized_layers"])
    in_memory = MultimodalModel.from_pretrained(tiny_run).eval()
    quantize_linears(in_memory, scheme=scheme)
    assert max_logit_difference(loaded, in_memory, batches) == 0.0
    float_model = MultimodalModel.from_pretrained(tiny_run).eval()
    assert 0 < max_logit_difference(loaded, float_model, batches) < 0.1
    stored = load_file(str(tmp_path / "q" / WEIGHTS_NAME))
    name = manifest["details"]["quantized_layers"][0]
    assert stored[f"{name}.weight_int8"].dtype == torch.int8 and f"{name}.weight" not in stored
    float_bytes = (tiny_run / "model" / "model.safetensors").stat().st_size
    assert (tmp_path / "q" / WEIGHTS_NAME).stat().st_size < float_bytes


def _old_format_int8_folder(tiny_run: Path, out: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """An int8 export as crossfuse wrote it with torch.ao dynamic quantization: per-row symmetric int8 weights with
    scales and (zero) zero points, float bias, ``details`` without a backend. Built by hand, without torch.ao."""
    export.main([str(tiny_run), "--kind", "int8", "--out", str(out)])
    model = MultimodalModel.from_pretrained(tiny_run).eval()
    names = linear_names(model)
    state = {k: v for k, v in model.state_dict().items() if k not in {f"{n}.weight" for n in names}}
    quantized = {}
    for name in names:
        weight = model.get_submodule(name).weight.detach()
        scale = weight.abs().amax(dim=1).clamp_min(1e-8) / 127.5  # per_channel_symmetric qint8
        quantized[name] = torch.clamp(torch.round(weight / scale[:, None]), -128, 127).to(torch.int8)
        state.update({f"{name}.weight_int8": quantized[name], f"{name}.weight_scale": scale.float(),
                      f"{name}.weight_zero_point": torch.zeros(len(scale), dtype=torch.long)})
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / WEIGHTS_NAME))
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["details"] = {"scheme": "dynamic int8, per-output-row symmetric weights, float activations quantized "
                                     "per batch", "parts": ["text", "fusion", "head"], "quantized_layers": names}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    return out, quantized


def test_old_format_int8_folders_load_with_a_warning_to_re_export(tiny_run, tmp_path, batches):
    folder, quantized = _old_format_int8_folder(tiny_run, tmp_path / "old")
    with pytest.warns(UserWarning, match=r"old format .* Re-export it with this version: python export.py"):
        loaded = load_for_inference(folder)
    layers = quantized_layers(loaded)
    assert sorted(layers) == sorted(quantized)
    for name, qweight in quantized.items():  # the stored int8 weights, exactly
        assert torch.equal(layers[name].weight.qdata, qweight)
    float_model = MultimodalModel.from_pretrained(tiny_run).eval()
    assert max_logit_difference(loaded, float_model, batches) < 0.1
    state = load_file(str(folder / WEIGHTS_NAME))  # zero points torchao's symmetric tensors cannot hold
    state[f"{next(iter(quantized))}.weight_zero_point"][0] = 3
    save_file(state, str(folder / WEIGHTS_NAME))
    with pytest.raises(ModelNotAvailableError, match=f"{re.escape(str(folder / WEIGHTS_NAME))}.*non-zero weight zero "
                                                     "points.*re-export"):
        load_for_inference(folder)


def test_int8_without_torchao_says_how_to_install_it(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # what import finds when torchao is missing
    with pytest.raises(ModuleNotFoundError, match=r"needs torchao: pip install 'crossfuse\[deploy\]'"):
        export.main([str(tiny_run), "--kind", "int8", "--out", str(tmp_path / "q")])
    assert not (tmp_path / "q").exists()


def _torch_uses(tree: ast.AST) -> list[str]:
    """Dotted ``torch...`` names a module imports or reads (strings and comments are not code)."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            uses += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            uses += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute):
            parts, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                uses.append(".".join([value.id, *reversed(parts)]))
    return [u for u in uses if u == "torch" or u.startswith("torch.")]


def test_deploy_calls_no_deprecated_or_private_torch_api():
    deploy_dir = Path(__file__).resolve().parent.parent / "deploy"
    assert "torch.ao.quantization.quantize_dynamic" in _torch_uses(ast.parse(
        "from torch.ao.quantization import quantize_dynamic\nx = torch._make_per_channel_quantized_tensor"))
    for path in sorted(deploy_dir.glob("*.py")):
        bad = [u for u in _torch_uses(ast.parse(path.read_text()))
               if u.startswith("torch.ao") or any(part.startswith("_") for part in u.split("."))]
        assert not bad, f"{path.name} uses {bad}"


@pytest.mark.parametrize("method", ["magnitude", "structured"])
def test_pruning_reaches_its_sparsity_per_layer(tiny_run, tmp_path, method):
    manifest = export.main([str(tiny_run), "--kind", "pruned", "--method", method, "--sparsity", "0.5",
                            "--out", str(tmp_path / "p")])
    per_layer = manifest["details"]["sparsity"]["per_layer"]
    model = load_for_inference(tmp_path / "p")
    layers = dict(model.named_modules())
    assert set(per_layer) == set(prunable_layers(model)) and len(per_layer) > 5
    for name, reported in per_layer.items():
        weight = layers[name].weight
        assert reported == pytest.approx(float((weight == 0).float().mean()), abs=1e-4)
        assert reported == pytest.approx(0.5, abs=0.02)
        if method == "structured":  # whole rows are zero, with their bias entries
            zero_rows = (weight == 0).all(dim=1)
            assert int(zero_rows.sum()) == round(0.5 * weight.shape[0])
            assert bool((layers[name].bias[zero_rows] == 0).all())
    logits_layer = model.head.net[-1]
    assert not bool((logits_layer.weight == 0).any())  # the classifier is never pruned


def test_recovery_finetune_trains_and_keeps_pruned_weights_zero(tiny_run, tmp_path):
    manifest = export.main([str(tiny_run), "--kind", "pruned", "--sparsity", "0.5", "--finetune-steps", "2",
                            "--finetune-override", "eval.modality_ablation=false",
                            "--finetune-override", "data.test_split=null", "--out", str(tmp_path / "ft")])
    assert manifest["details"]["finetune"]["steps"] == 2
    assert len((tmp_path / "ft" / "finetune_log.jsonl").read_text().splitlines()) >= 2
    tuned = dict(load_for_inference(tmp_path / "ft").named_modules())
    pruned_only = MultimodalModel.from_pretrained(tiny_run)
    masks = prune_model(pruned_only, 0.5)
    reference = dict(pruned_only.named_modules())
    moved = 0
    for name, mask in masks.items():
        weight = tuned[name].weight
        assert bool((weight[mask == 0] == 0).all()), name  # the mask held during training
        moved += int((weight[mask == 1] != reference[name].weight[mask == 1]).sum())
    assert moved > 0  # the fine-tune did change the kept weights


def test_user_errors_are_clear(tiny_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.main([str(tmp_path / "no_such_run"), "--kind", "int8"])
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_for_inference(tmp_path / "no_such_run")
    with pytest.raises(ValueError, match="parts of a model are"):
        export.main([str(tiny_run), "--kind", "int8", "--parts", "txt", "--out", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="sparsity must be in"):
        export.main([str(tiny_run), "--kind", "pruned", "--sparsity", "1.5", "--out", str(tmp_path / "b")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # a failed export leaves nothing
    assert not list(tmp_path.glob(".tmp-*"))
    export.main([str(tiny_run), "--kind", "int8", "--out", str(tmp_path / "c")])
    with pytest.raises(FileExistsError, match="already exists; .* --overwrite"):
        export.main([str(tiny_run), "--kind", "int8", "--out", str(tmp_path / "c")])
    export.main([str(tiny_run), "--kind", "pruned", "--out", str(tmp_path / "c"), "--overwrite"])
    assert json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())["kind"] == "pruned"
    config = (tiny_run / "config.yaml").read_text()
    with pytest.raises(FileExistsError, match="over the input"):  # never into the run folder, even asked to
        export.main([str(tiny_run), "--kind", "int8", "--out", str(tiny_run), "--overwrite"])
    with pytest.raises(FileExistsError, match="holds a training run"):  # nor into another run's folder
        export.main([str(tmp_path / "c"), "--kind", "int8", "--out", str(tiny_run.parent / "tiny"), "--overwrite"])
    with pytest.raises(FileExistsError, match="over the input"):
        export.main([str(tiny_run), "--kind", "int8", "--out", str(tiny_run / "model" / "int8")])
    assert (tiny_run / "config.yaml").read_text() == config and not (tiny_run / MANIFEST_NAME).exists()
    manifest = json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())
    (tmp_path / "c" / MANIFEST_NAME).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ValueError, match="re-export"):
        load_for_inference(tmp_path / "c")


@pytest.mark.parametrize("scheme", ["weight-only", "dynamic"])
def test_quantized_model_runs_with_missing_modalities(tiny_run, batches, scheme):
    model = MultimodalModel.from_pretrained(tiny_run).eval()
    quantize_linears(model, scheme=scheme)
    with torch.no_grad():
        for drop in (("text",), ("image",)):
            assert torch.isfinite(model(batches[0], drop=drop)["logits"]).all()
