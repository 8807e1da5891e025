"""End-to-end: train.main and evaluate.main on a tiny configuration, and the run folder they leave."""

import json

import pytest
import yaml
from conftest import tiny_overrides

from crossfuse.commands import evaluate, train
from engine.config import ConfigError
from engine.run_folder import RunExistsError
from models import MultimodalModel


def test_train_writes_run_folder(tiny_run):
    assert (tiny_run / "config.yaml").is_file()
    saved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 6 and saved["model"]["fusion"]["name"] == "concat"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    res = metrics["results"]
    assert set(res) == {"val", "test"}
    assert res["val"]["overall"]["n"] == 16 * 5  # 16 examples x 5 languages
    assert set(res["val"]["per_language"]) == {"de", "en", "es", "fr", "ru"}
    assert set(res["val"]["ablation"]) == {"no_text", "no_image"}
    assert 0.0 <= res["test"]["overall"]["accuracy"] <= 1.0
    logged = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    MultimodalModel.from_pretrained(tiny_run)


def test_evaluate_reproduces_training_metrics(tiny_run, tmp_path):
    out = evaluate.main([str(tiny_run), "--out", str(tmp_path / "e.json")])
    trained = json.loads((tiny_run / "metrics.json").read_text())["results"]
    assert out["val"]["overall"]["accuracy"] == pytest.approx(trained["val"]["overall"]["accuracy"])
    assert out["test"]["overall"]["auroc"] == pytest.approx(trained["test"]["overall"]["auroc"])
    assert json.loads((tmp_path / "e.json").read_text())["val"]["overall"]["n"] == 80


def test_evaluate_overrides_select_language(tiny_run, tmp_path):
    out = evaluate.main([str(tiny_run), "data.eval_languages=[ru]", "--out", str(tmp_path / "e.json")])
    assert out["val"]["overall"]["n"] == 16
    assert set(out["val"]["per_language"]) == {"ru"}


def test_existing_run_is_not_overwritten(tiny_run):
    with pytest.raises(RunExistsError, match="--resume latest"):
        train.main(tiny_overrides(tiny_run.parent, "tiny"))


def test_bad_config_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="optim.lr"):
        train.main(tiny_overrides(tmp_path, **{"optim.lrr": 1}))
    with pytest.raises(KeyError, match="gated"):
        train.main(tiny_overrides(tmp_path, **{"model.fusion.name": "gatedd"}))
    assert not (tmp_path / "tiny" / "model").exists()


def test_evaluate_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        evaluate.main([str(tmp_path / "nothing")])


def test_unimodal_baseline_builds_one_tower(tmp_path):
    train.main(tiny_overrides(tmp_path, "txt", **{"train.max_steps": 2, "model.fusion.name": "text_only"}))
    model = MultimodalModel.from_pretrained(tmp_path / "txt")
    assert model.vision is None and model.text is not None


def test_overwrite_restarts_the_run_log(tmp_path):
    for _ in range(2):
        train.main(tiny_overrides(tmp_path, "again", **{"train.max_steps": 2, "run.overwrite": "true"}))
    logged = [json.loads(line) for line in (tmp_path / "again" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "train/loss" in r] == [1, 2]


def test_evaluate_plots_writes_the_figures(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    evaluate.main([str(run), "--plots", "--out", str(tmp_path / "e.json")])
    written = sorted(p.name for p in (run / "plots").iterdir())
    assert written == ["ablation.png", "confusion_matrix.png", "learning_curves.png", "per_language.png",
                       "reliability.png"]
    assert all((run / "plots" / n).read_bytes()[:4] == b"\x89PNG" for n in written)
