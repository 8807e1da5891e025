"""ONNX export: parity with PyTorch on real batches (dynamic batch and sequence, missing modalities), every
registered fusion method either exports and agrees or is refused by name, and opsets that cannot work are refused."""

import copy

import pytest
import torch
from omegaconf import OmegaConf

from crossfuse.commands import export
from deploy import get_export, load_for_inference
from deploy.onnx_export import ATOL, OnnxModel, UnsupportedExportError, export_onnx
from deploy.parity import max_logit_difference, real_batches
from fusion import list_fusions
from models import MultimodalModel


@pytest.fixture(scope="module")
def onnx_dir(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "export"
    manifest = export.main([str(tiny_run), "--kind", "onnx", "--out", str(out)])
    assert manifest["details"]["parity"]["ok"] and manifest["details"]["parity"]["examples"] == 64
    return out


def test_onnx_runtime_matches_pytorch_on_real_batches(tiny_run, onnx_dir):
    onnx_model, torch_model = load_for_inference(onnx_dir), MultimodalModel.from_pretrained(tiny_run).eval()
    batches = real_batches(tiny_run, 3, batch_size=7)  # the graph was traced at batch 2, sequence 8
    pad = torch.zeros(7, 5, dtype=torch.long)  # longer sequences: 5 extra padding positions
    batches.append(dict(batches[0], input_ids=torch.cat([batches[0]["input_ids"], pad], 1),
                        attention_mask=torch.cat([batches[0]["attention_mask"], pad], 1)))
    assert {tuple(b["input_ids"].shape) for b in batches} == {(7, 8), (7, 13)}
    assert max_logit_difference(onnx_model, torch_model, batches) <= ATOL
    with torch.no_grad():
        for batch in batches:
            mixed = dict(batch, text_present=torch.arange(7) % 2 == 0, image_present=torch.arange(7) % 3 != 0)
            for drop in ((), ("text",), ("image",)):
                diff = onnx_model(mixed, drop=drop)["logits"] - torch_model(mixed, drop=drop)["logits"]
                assert diff.abs().max() <= ATOL
    assert onnx_model.session.get_inputs()[0].shape == ["batch", "sequence"]


def _tiny_model(fusion: str) -> MultimodalModel:
    cfg = OmegaConf.to_container(OmegaConf.load("configs/defaults.yaml"))["model"]
    cfg["text"]["tiny"] = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "intermediate_size": 16}
    cfg["vision"]["kwargs"] = {"img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
    cfg["fusion"] = dict(copy.deepcopy(cfg["fusion"]), name=fusion, dim=16)
    torch.manual_seed(0)
    return MultimodalModel(cfg, 3, vocab_size=50, image_overrides={"image_size": 16}).eval()


@pytest.mark.parametrize("fusion", list_fusions())
def test_every_fusion_method_exports_and_matches_pytorch(fusion, tmp_path):
    model = _tiny_model(fusion)
    export_onnx(model, tmp_path / "m.onnx")
    onnx_model = OnnxModel(tmp_path / "m.onnx", model.config_dict())
    mask = torch.ones(5, 11, dtype=torch.long)
    mask[1, 4:] = 0
    batch = {"input_ids": torch.randint(0, 50, (5, 11)), "attention_mask": mask,
             "pixel_values": torch.randn(5, 3, 16, 16), "text_present": torch.tensor([1, 0, 1, 1, 1]).bool(),
             "image_present": torch.tensor([1, 1, 0, 1, 1]).bool()}
    assert max_logit_difference(onnx_model, model, [batch]) <= ATOL


def test_a_fusion_the_exporter_cannot_trace_is_refused_by_name(tmp_path, monkeypatch):
    model = _tiny_model("concat")
    original = model.fusion.fuse

    def fuse_with_svd(text, image):  # an op with no ONNX counterpart, as a user's own fusion method might use
        return original(text, image) + torch.linalg.svdvals(image.tokens).sum()

    monkeypatch.setattr(model.fusion, "fuse", fuse_with_svd)
    with pytest.raises(UnsupportedExportError, match="fusion method 'concat' cannot be exported at ONNX opset 17.*"
                                                      "svd.*export.py --kind int8"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedExportError, match="fusion method 'concat' cannot be exported"):
        get_export("onnx-int8").export(model, tmp_path)
    assert not any(tmp_path.iterdir())  # the intermediate float graph is removed


def test_opsets_that_cannot_express_the_model_are_refused(tmp_path):
    model = _tiny_model("concat")
    with pytest.raises(UnsupportedExportError, match="opset 13.*scaled_dot_product_attention"):
        export_onnx(model, tmp_path / "m.onnx", opset=13)
    with pytest.raises(UnsupportedExportError, match="opset 30 is outside"):
        export_onnx(model, tmp_path / "m.onnx", opset=30)
