"""A run folder has one owner and never mixes two runs; a resume is exact or says why not; nothing from a
checkpoint is unpickled; a damaged file is named in one clear message."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from crossfuse.commands import evaluate, train
from engine.checkpoint import STATE_FILE, CheckpointError, list_checkpoints
from engine.config import ConfigError
from engine.run_folder import PREEMPTED_FILE, FolderLock, RunExistsError, RunLockedError
from engine.trainer import Trainer
from models.errors import ModelNotAvailableError

ROOT = Path(__file__).resolve().parent.parent
SAVED = {"train.max_steps": 6, "train.save_every": 2, "eval.modality_ablation": "false", "data.test_split": "null"}


def _steps_logged(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines() if "train/loss" in x]


def _stop_at(monkeypatch, step: int) -> None:
    monkeypatch.setattr(Trainer, "_stop_requested", lambda self, log_step: self.state["step"] == step)


def test_overwrite_moves_the_old_run_aside(tmp_path):
    train.main(tiny_overrides(tmp_path, "r", **SAVED))
    old_model = load_file(str(tmp_path / "r" / "model" / "model.safetensors"))
    train.main(tiny_overrides(tmp_path, "r", **{**SAVED, "train.max_steps": 4, "run.overwrite": "true",
                                                "run.seed": 9}))
    (aside,) = tmp_path.glob("r.replaced-*")
    kept = load_file(str(aside / "model" / "model.safetensors"))
    assert all(torch.equal(kept[k], v) for k, v in old_model.items())  # the old run is kept whole, beside the new
    assert _steps_logged(aside) == [1, 2, 3, 4, 5, 6]
    run = tmp_path / "r"
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002", "step_00000004"]  # none of the old run
    assert _steps_logged(run) == [1, 2, 3, 4] and json.loads((run / "metrics.json").read_text())["steps"] == 4


def test_a_fresh_start_in_an_interrupted_run_is_refused(tmp_path, monkeypatch):
    _stop_at(monkeypatch, 2)
    assert train.main(tiny_overrides(tmp_path, "cut", **SAVED))["steps"] == 2
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "model").exists()
    with pytest.raises(RunExistsError, match="--resume latest"):
        train.main(tiny_overrides(tmp_path, "cut", **SAVED))
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["step_00000002"]  # nothing was touched


def test_a_locked_run_folder_is_refused_and_a_dead_owner_is_not_an_obstacle(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from engine.run_folder import FolderLock; "
        "FolderLock(sys.argv[2], 'a test').acquire(); print('locked', flush=True); time.sleep(120)"),
        str(ROOT), str(tmp_path / "busy")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"in use by a test \\(pid {holder.pid} on"):
            train.main(tiny_overrides(tmp_path, "busy", **{"train.max_steps": 1}))
    finally:
        holder.kill()
        holder.wait()
    res = train.main(tiny_overrides(tmp_path, "busy", **{"train.max_steps": 1}))  # killed: its lock went with it
    assert res["steps"] == 1
    with FolderLock(tmp_path / "busy"):  # and the finished run released it
        pass


def test_keep_last_must_keep_a_checkpoint():
    from engine.config import load_config

    with pytest.raises(ConfigError, match="'train.keep_last' is 0; it must be at least 1"):
        load_config(None, ["train.keep_last=0"])


def test_a_best_metric_typo_is_found_before_training(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'accuracy'"):
        train.main(tiny_overrides(tmp_path, "typo", **{"train.best_metric": "acuracy"}))
    assert not (tmp_path / "typo").exists()


@pytest.fixture
def interrupted(tmp_path, monkeypatch) -> Path:
    """A run stopped at step 2 (as by a pre-emption signal), with its checkpoint and marker."""
    _stop_at(monkeypatch, 2)
    doc = train.main(tiny_overrides(tmp_path, "cut", **SAVED))
    monkeypatch.undo()
    marker = json.loads((tmp_path / "cut" / PREEMPTED_FILE).read_text())
    assert marker["steps"] == 2 and marker["checkpoint"] == doc["checkpoint"]
    return tmp_path / "cut"


def _resume(run: Path, *extra: str) -> dict:
    return train.main(tiny_overrides(run.parent, run.name, **SAVED) + list(extra) + ["--resume", "latest"])


def test_resume_refuses_missing_random_state_unless_told(interrupted):
    (interrupted / "checkpoints" / "step_00000002" / "random_states_0.pkl").unlink()
    with pytest.raises(CheckpointError, match="random_states_0.pkl cannot be read.*allow_inexact_resume"):
        _resume(interrupted)
    with pytest.warns(UserWarning, match="draws other random numbers"):
        assert _resume(interrupted, "train.allow_inexact_resume=true")["steps"] == 6
    assert not (interrupted / PREEMPTED_FILE).exists()  # the run continued: no longer pre-empted


def test_nothing_in_a_checkpoint_is_unpickled(interrupted, tmp_path):
    witness = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {witness}",))

    (interrupted / "checkpoints" / "step_00000002" / "random_states_0.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="random_states_0.pkl cannot be read"):
        _resume(interrupted)
    assert not witness.exists()


def test_a_resume_with_other_settings_is_refused_and_leaves_the_config(interrupted):
    before = (interrupted / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"optim.lr: saved 0.001, given 0.0001"):
        _resume(interrupted, "optim.lr=1e-4")
    assert (interrupted / "config.yaml").read_text() == before
    _resume(interrupted, "run.log_every=3")  # how the run is watched may change, and is recorded
    assert "log_every: 3" in (interrupted / "config.yaml").read_text()


def test_a_damaged_checkpoint_is_named(interrupted):
    optimizer = interrupted / "checkpoints" / "step_00000002" / "optimizer.bin"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="step_00000002: the training state cannot be loaded"):
        _resume(interrupted)
    (interrupted / "checkpoints" / "step_00000002" / STATE_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="trainer_state.json is not valid JSON"):
        _resume(interrupted)


def test_a_partial_last_log_line_does_not_block_a_resume(interrupted):
    with open(interrupted / "log.jsonl", "a") as f:
        f.write('{"step": 3, "train/lo')  # killed while writing
    assert _resume(interrupted)["steps"] == 6
    assert _steps_logged(interrupted) == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_at_an_epochs_end_does_not_repeat_its_evaluation(tmp_path, monkeypatch):
    """240 rows (48 examples x 5 languages) in batches of 16: 15 steps per epoch; stopped right after the epoch's
    last step and its checkpoint."""
    options = {**SAVED, "train.max_steps": 17, "train.save_every": 15}
    _stop_at(monkeypatch, 15)
    train.main(tiny_overrides(tmp_path, "ep", **options))
    monkeypatch.undo()
    train.main(tiny_overrides(tmp_path, "ep", **options) + ["--resume", "latest"])
    rows = [json.loads(x) for x in (tmp_path / "ep" / "log.jsonl").read_text().splitlines()]
    evaluations = [r["step"] for r in rows if "val/accuracy" in r and "train/loss" not in r]
    assert evaluations.count(15) == 1  # the resumed run starts the next epoch; it does not evaluate epoch 1 again
    state = json.loads((tmp_path / "ep" / "checkpoints" / "step_00000015" / STATE_FILE).read_text())
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 0)


def test_damaged_model_files_get_one_clear_message(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelNotAvailableError, match=r"model\.safetensors cannot be read as safetensors"):
        evaluate.main([str(run)])
    shutil.copy(tiny_run / "model" / "model.safetensors", weights)
    (run / "model" / "crossfuse.json").write_text("{oops")
    with pytest.raises(ModelNotAvailableError, match=r"crossfuse.json is not valid JSON"):
        evaluate.main([str(run)])
    shutil.copy(tiny_run / "model" / "crossfuse.json", run / "model" / "crossfuse.json")
    text_config = run / "model" / "text_config" / "config.json"
    text_config.write_text(text_config.read_text().replace('"gelu"', '"nope"'))
    with pytest.raises(ModelNotAvailableError, match="cannot be rebuilt"):
        evaluate.main([str(run)])


def test_sigterm_to_the_process_group_with_loader_workers_saves_a_checkpoint(tmp_path):
    """What SLURM does before pre-emption: every process of the job, DataLoader workers included, gets SIGTERM.
    The workers ignore it, so the main process finishes its step, saves, and exits 0; the resume completes."""
    options = {"train.max_steps": 60, "data.num_workers": 2, "eval.modality_ablation": "false",
               "data.test_split": "null", "run.log_every": 1}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *tiny_overrides(tmp_path, "w", **options)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    log, deadline = tmp_path / "w" / "log.jsonl", time.time() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "no step logged within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group: the trainer and its two workers
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output[-3000:]
    (checkpoint,) = list_checkpoints(tmp_path / "w")
    assert (checkpoint / "model.safetensors").is_file() and (tmp_path / "w" / PREEMPTED_FILE).is_file()
    res = train.main(tiny_overrides(tmp_path, "w", **options) + ["--resume", "latest"])
    assert res["steps"] == 60


def test_image_paths_outside_the_dataset_folder_are_refused(tmp_path):
    from PIL import Image

    from data import create_dataset
    from data.records import DataError

    root, outside = tmp_path / "ds", tmp_path / "elsewhere.png"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(outside)
    Image.new("RGB", (8, 8)).save(root / "inside.png")
    rows = [{"id": "a", "text": "x", "img": "inside.png", "label": "yes"},
            {"id": "b", "text": "y", "img": "../elsewhere.png", "label": "no"},
            {"id": "c", "text": "z", "img": str(outside), "label": "no"}]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"train.jsonl:2: .*outside the dataset folder.*data.allow_outside_root"):
        create_dataset("jsonl", str(root), "train")
    skipped = create_dataset("jsonl", str(root), "train", on_error="skip")
    assert [r["id"] for r in skipped.records] == ["a"] and skipped.skip_counts() == {"image_outside_root": 2}
    allowed = create_dataset("jsonl", str(root), "train", allow_outside_root=True)
    assert [r["image"] for r in allowed.records][1:] == [str(outside)] * 2


def test_a_mistyped_test_split_fails_before_training(tmp_path):
    from data.splits import SplitNotFoundError

    with pytest.raises(SplitNotFoundError, match="data.test_split='tset'.*the splits there are"):
        train.main(tiny_overrides(tmp_path, "split", **{"data.test_split": "tset"}))
    assert not (tmp_path / "split").exists()
