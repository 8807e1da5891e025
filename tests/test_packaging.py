"""What an install ships and what the ``crossfuse`` command does: the library packages and configs are in the
wheel, the root scripts are not (``import evaluate`` must never mean this project's script); subcommands run the
same entry points; a user's mistake is one line without a traceback unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, env=ENV, timeout=300)
    (path,) = out.glob("crossfuse-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_the_library_and_its_configs_not_the_scripts(wheel):
    names = set(wheel.namelist())
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"fusion", "data", "models", "engine", "transfer", "merging", "deploy", "crossfuse"}
    for package in ("fusion", "data", "models", "engine", "transfer", "merging", "deploy", "crossfuse"):
        sources = {str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py")}
        assert sources <= names, f"not installed: {sorted(sources - names)}"  # a subpackage left out of pyproject
    shipped = {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*") if p.suffix in
               (".yaml", ".json")}
    assert {f"crossfuse/configs/{n}" for n in shipped} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "crossfuse = crossfuse.cli:main" in wheel.read(entry_points).decode()


def test_the_installed_package_finds_its_defaults_outside_a_checkout(wheel, tmp_path):
    wheel.extractall(tmp_path / "site")
    code = ("import engine.config as c; print(c.DEFAULTS); cfg = c.load_config('quickstart'); print(cfg.run.name)\n"
            "import importlib.util as u; print(u.find_spec('train'), u.find_spec('evaluate'))")
    env = {**ENV, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0].startswith(str(tmp_path / "site")) and out[0].endswith("crossfuse/configs/defaults.yaml")
    assert out[1] == "quickstart"  # a shipped experiment, by name
    assert out[2] == "None None"  # no top-level train / evaluate modules come with the install


def _crossfuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossfuse.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_subcommands_and_their_help():
    top = _crossfuse("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("train", "evaluate", "merge", "export", "predict",
                                                                  "validate", "distill-multilingual", "push"))
    sub = _crossfuse("train", "--help")
    assert sub.returncode == 0 and sub.stdout.startswith("usage: crossfuse train")
    unknown = _crossfuse("trian")
    assert unknown.returncode != 0 and "Did you mean 'train'" in unknown.stderr


def test_a_user_error_is_one_line_unless_debugging(tmp_path):
    bad = _crossfuse("train", "optim.lrr=1", f"run.output_dir={tmp_path}")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown config key 'optim.lrr'. Did you mean 'optim.lr'?" in bad.stderr and "--debug" in bad.stderr
    debug = _crossfuse("train", "optim.lrr=1", f"run.output_dir={tmp_path}", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
