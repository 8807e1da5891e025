from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from engine.config import DEFAULTS, Config, ConfigError, config_from_dict, load_config, to_dict

EXPERIMENTS = sorted((Path(__file__).parent.parent / "configs" / "experiments").glob("*.yaml"))


def test_defaults_yaml_matches_schema():
    assert to_dict(OmegaConf.structured(Config)) == OmegaConf.to_container(OmegaConf.load(DEFAULTS))


def test_overrides_apply_and_are_typed():
    cfg = load_config(None, ["optim.lr=3e-4", "model.fusion.name=gated", "data.languages=[en,de]"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.model.fusion.name == "gated"
    assert list(cfg.data.languages) == ["en", "de"]


def test_unknown_key_names_nearest():
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(None, ["optim.lrr=1e-3"])
    with pytest.raises(ConfigError, match="model.fusion.name"):
        load_config(None, ["model.fusion.nme=gated"])


def test_wrong_type_fails(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(None, ["train.batch_size=lots"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_config(bad)


def test_bad_choice_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="run.tracker"):
        load_config(None, ["run.tracker=mlflow"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_config_is_readonly_and_roundtrips():
    cfg = load_config(None, ["run.name=x"])
    with pytest.raises(ReadonlyConfigError):
        cfg.run.name = "y"
    assert to_dict(config_from_dict(to_dict(cfg))) == to_dict(cfg)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_config_loads(path):
    load_config(path)


def test_empty_mapping_override_clears_it(tmp_path):
    # merged, the experiment's ViT kwargs would reach resnet18 and fail there
    exp = tmp_path / "vit.yaml"
    exp.write_text("model:\n  vision:\n    kwargs: {img_size: 32, patch_size: 4, embed_dim: 64}\n")
    cfg = load_config(exp, ["model.vision.name=resnet18", "model.vision.kwargs={}"])
    assert dict(cfg.model.vision.kwargs) == {}
    cfg = load_config(exp, ["model.vision.kwargs={depth: 5}"])
    assert cfg.model.vision.kwargs.depth == 5 and cfg.model.vision.kwargs.embed_dim == 64  # non-empty still merges


def test_mixed_precision_no_is_not_a_boolean(tmp_path):
    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    exp = tmp_path / "exp.yaml"
    exp.write_text("train:\n  mixed_precision: no\n")
    assert load_config(exp).train.mixed_precision == "no"
