"""The one registry every kind of component uses: names, aliases for renamed components, glob listing, the
nearest-name error and options checked against the builder's signature."""

import json
import warnings

import pytest
import torch

from crossfuse.registry import Registry, UnknownNameError
from data.registry import DATASETS
from deploy.registry import EXPORTS
from engine.tasks import TASKS
from fusion import FusionModule, ModalityFeatures, list_fusions, register_fusion
from fusion.registry import FUSIONS
from merging.registry import METHODS
from models import MultimodalModel


def _builder(a, b, size: int = 3, name: str = "x"):
    return (a, b, size, name)


def test_register_list_build_and_errors():
    reg = Registry("widget", supplied=("a", "b"))
    reg.add("round_widget", _builder)
    reg.add("square_widget", _builder, renamed_from=("box",))
    assert reg.names() == ["round_widget", "square_widget"] and reg.names("sq*") == ["square_widget"]
    assert "box" in reg and len(reg) == 2 and list(reg) == reg.names()
    assert reg.build("round_widget", 1, 2, size=5) == (1, 2, 5, "x")
    assert list(reg.options("round_widget")) == ["size", "name"]  # a, b are supplied by the framework
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("round_widget", _builder)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("box", _builder)  # an alias holds its name too
    with pytest.raises(UnknownNameError, match=r"unknown widget 'rund_widget'\. Did you mean 'round_widget'\?"):
        reg.get("rund_widget")
    with pytest.raises(TypeError, match="has no option 'sise'. Did you mean 'size'"):
        reg.build("round_widget", 1, 2, sise=5)


def test_a_renamed_name_still_resolves_with_a_deprecation_warning():
    reg = Registry("widget")
    reg.add("new_name", _builder, renamed_from=("old_name",))
    with pytest.warns(DeprecationWarning, match="'old_name' was renamed to 'new_name'"):
        assert reg.get("old_name") is _builder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.get("new_name") is _builder  # the current name never warns


def test_required_options_are_named():
    reg = Registry("widget")
    reg.add("needs", lambda teachers, weights=None: teachers)
    with pytest.raises(TypeError, match="needs the option"):
        reg.check_options("needs", {})


@pytest.mark.parametrize("registry", [FUSIONS, DATASETS, TASKS, METHODS, EXPORTS],
                         ids=["fusion", "dataset", "task", "merge", "export"])
def test_every_kind_of_component_uses_the_one_registry(registry):
    assert isinstance(registry, Registry) and len(registry) > 0
    for name in registry.names():
        registry.options(name)  # every builder's signature is readable as its config schema


@pytest.fixture
def scratch_fusions(monkeypatch):
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(FUSIONS, "_items", dict(FUSIONS._items))
    monkeypatch.setattr(FUSIONS, "_renamed", dict(FUSIONS._renamed))


def test_a_saved_model_naming_a_renamed_fusion_still_loads(tmp_path, scratch_fusions):
    @register_fusion("mean_pool_v2", renamed_from=("mean_pool_v1",))
    class MeanPool(FusionModule):
        """Test method: ``(text.pooled + image.pooled) / 2`` -> linear ``(B, dim)``."""

        def __init__(self, text_dim, image_dim, num_outputs, dim=16, dropout=0.0):
            super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
            self.proj = torch.nn.Linear(text_dim, dim)

        def fuse(self, text: ModalityFeatures, image: ModalityFeatures):
            return self.proj((text.pooled + image.pooled) / 2)

    assert "mean_pool_v2" in list_fusions("mean_pool*") and "mean_pool_v1" not in list_fusions()
    cfg = {"text": {"name": None, "tiny": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                           "intermediate_size": 32}},
           "vision": {"name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32, "patch_size": 16, "embed_dim": 16,
                                                                 "depth": 1, "num_heads": 2}},
           "fusion": {"name": "mean_pool_v2", "dim": 16, "dropout": 0.0}, "head": {"hidden": 0, "dropout": 0.0}}
    model = MultimodalModel(cfg, 2, vocab_size=50, image_overrides={"image_size": 32})
    model.save_pretrained(tmp_path / "m")
    info = json.loads((tmp_path / "m" / "crossfuse.json").read_text())
    info["model"]["fusion"]["name"] = "mean_pool_v1"  # as a model saved before the rename names it
    (tmp_path / "m" / "crossfuse.json").write_text(json.dumps(info))
    with pytest.warns(DeprecationWarning, match="renamed to 'mean_pool_v2'"):
        loaded = MultimodalModel.from_pretrained(tmp_path / "m")
    assert isinstance(loaded.fusion, MeanPool) and loaded.model_cfg["fusion"]["name"] == "mean_pool_v2"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
