"""W&B sweeps and run names: the command line an agent runs, trials that never share a folder, unnamed runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import conftest
import yaml
from conftest import _DATA_ROOT, TINY_OVERRIDES  # noqa: F401  (the session's tiny dataset)
from omegaconf import OmegaConf

from crossfuse.commands import train
from engine.tracking import WANDB_ID_FILE

ROOT = Path(__file__).resolve().parent.parent


def _experiment(tmp_path: Path, **extra: object) -> Path:
    """An experiment YAML of the tiny configuration (as a user's experiment file would hold it)."""
    dotlist = TINY_OVERRIDES + [f"data.root={conftest._DATA_ROOT}", f"run.output_dir={tmp_path / 'runs'}"] + [
        f"{k}={v}" for k, v in extra.items()]
    path = tmp_path / "exp.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.from_dotlist(dotlist)))
    return path


def test_the_shipped_sweep_is_a_valid_sweep_of_real_keys():
    from engine.config import load_config

    sweep = yaml.safe_load((ROOT / "configs" / "sweeps" / "quickstart.yaml").read_text())
    assert sweep["program"] == "train.py" and "${args}" in sweep["command"]
    values = {k: v["values"] for k, v in sweep["parameters"].items()}
    for key, options in values.items():
        for value in options:  # every trial's overrides are valid config
            load_config("configs/experiments/quickstart.yaml", [f"{key}={value}"])


def test_two_agent_trials_get_two_run_folders(tmp_path):
    """What `wandb agent` runs for each trial: the sweep's command with `--key=value` parameters, and its
    environment (WANDB_SWEEP_ID, WANDB_RUN_ID). The experiment names the run; the trials must not collide."""
    exp = _experiment(tmp_path, **{"run.name": "swept", "data.test_split": "null", "eval.modality_ablation": "false"})
    for trial, lr in (("trial0aa", "0.002"), ("trial1bb", "0.0005")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "WANDB_SWEEP_ID": "sweep42",
               "WANDB_RUN_ID": trial}
        cmd = [sys.executable, "train.py", str(exp), "run.tracker=wandb", "--train.max_steps=2", f"--optim.lr={lr}"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = tmp_path / "runs" / f"swept-{trial}"
        assert (run / "model" / "model.safetensors").is_file()
        assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == float(lr)
        assert (run / WANDB_ID_FILE).read_text().strip() == trial  # the agent's run: W&B files it under the sweep
        assert list((run / "wandb").glob(f"offline-run-*-{trial}"))


def test_runs_without_a_name_get_their_own_folders(tmp_path):
    exp = _experiment(tmp_path, **{"train.max_steps": 1, "data.test_split": "null", "eval.modality_ablation": "false"})
    train.main([str(exp)])
    train.main([str(exp)])  # the same second, most likely: still a folder of its own
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(name.startswith("run-") for name in runs)
