"""A pure weight merge imports torch, safetensors and the recipe loader, not the training stack."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

HEAVY = ("accelerate", "deepspeed", "timm", "transformers", "data", "engine.trainer", "engine.builders", "fusion",
         "models.multimodal", "merging.scoring", "merging.distill")

SCRIPT = """
import sys
from crossfuse.commands import merge
merge.main(sys.argv[1:])
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY", heavy)
"""


def _imports_after_merge(argv: list[str]) -> list[str]:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=HEAVY), *argv], capture_output=True, text=True,
                         cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                        "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("HEAVY"))
    return ast.literal_eval(line[len("HEAVY "):])


def test_weight_merge_does_not_import_the_training_stack(tiny_run, tmp_path):
    a = shutil.copytree(tiny_run, tmp_path / "a")
    b = shutil.copytree(tiny_run, tmp_path / "b")
    for method in ("linear", "ties"):
        argv = [f"method={method}", f"models=[{a},{b}]", f"output={tmp_path / method}"]
        if method == "ties":
            argv.append(f"base={a}")
        assert _imports_after_merge(argv) == []
        assert (tmp_path / method / "model" / "model.safetensors").is_file()


LAZY_SCRIPT = """
import importlib, inspect, sys
package = importlib.import_module(sys.argv[1])
wrong = []
for name in sorted(package._LAZY):
    exec(f"from {sys.argv[1]} import {name} as first")
    for value in (first, getattr(package, name)):  # both ways of reaching it, the second after the import
        if inspect.ismodule(value):
            wrong.append(name)
print("MODULES", sorted(set(wrong)))
"""


def test_lazy_exports_are_the_objects_not_their_modules():
    # A lazily exported name that equals its module's name (merging.greedy_soup) was shadowed by the submodule
    # the first import put on the package: `from merging import greedy_soup` gave a module, not the function.
    root = Path(__file__).resolve().parent.parent
    for package in ("merging", "models"):
        out = subprocess.run([sys.executable, "-c", LAZY_SCRIPT, package], capture_output=True, text=True, cwd=root,
                             env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES"))
        assert ast.literal_eval(line[len("MODULES "):]) == [], f"{package}: lazy names resolving to modules"
