"""A benchmark's stamp names the commit and says when the code run differs from it, untracked files included."""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _doc import code_state  # noqa: E402


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_stamp_reports_tracked_and_untracked_changes_but_not_docs(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("runs/\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert code_state(tmp_path) == head
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("figures")  # what benchmarks write
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "x.json").write_text("{}")  # ignored outputs
    assert code_state(tmp_path) == head
    (tmp_path / "merging").mkdir()
    (tmp_path / "merging" / "new_method.py").write_text("y = 2\n")  # untracked code: the 2e88aff case
    assert code_state(tmp_path) == f"{head} with uncommitted changes"
    (tmp_path / "merging" / "new_method.py").unlink()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_state(tmp_path) == f"{head} with uncommitted changes"
    assert code_state(tmp_path / "docs") == f"{head} with uncommitted changes"  # any folder answers for all
