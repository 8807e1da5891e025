"""Offline and naming hints (issue #18) that are right for each source: a HuggingFace text model, a timm model,
a local checkpoint or folder. Each names the config key to change and a download that exists."""

from __future__ import annotations

import pytest

from models import ModelNotAvailableError, TextEncoder, VisionEncoder


def test_timm_hint_names_the_hub_repo_the_checkpoint_key_and_pretrained_false():
    with pytest.raises(ModelNotAvailableError) as info:  # offline (tests/conftest.py) and not cached
        VisionEncoder("resnet18", pretrained=True)
    message = str(info.value)
    assert "hf download timm/resnet18.a1_in1k" in message  # the repo timm actually downloads
    assert "download resnet18 " not in message and "download resnet18`" not in message
    assert "model.vision.checkpoint=" in message and "model.vision.pretrained=false" in message


def test_unknown_timm_model_offers_the_nearest_names():
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet-18'.*Did you mean 'resnet18'") as info:
        VisionEncoder("resnet-18")
    assert "*vit*" not in str(info.value)


def test_missing_vision_checkpoint_names_the_config_key(tmp_path):
    with pytest.raises(ModelNotAvailableError, match=r"model\.vision\.checkpoint .*nope\.safetensors.* does not exist"):
        VisionEncoder("resnet18", checkpoint=str(tmp_path / "nope.safetensors"))


def test_text_hint_names_the_hub_download_and_the_config_key():
    with pytest.raises(ModelNotAvailableError) as info:
        TextEncoder("no-such-org/no-such-model")
    message = str(info.value)
    assert "hf download no-such-org/no-such-model" in message and "model.text.name=" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_a_local_text_model_path_that_does_not_exist_is_named_as_such(tmp_path):
    with pytest.raises(ModelNotAvailableError, match=r"model\.text\.name .*missing_bert.* is not a folder") as info:
        TextEncoder(str(tmp_path / "missing_bert"))
    assert "hf download" not in str(info.value)  # a path is not a Hub name
