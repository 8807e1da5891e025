"""Write a benchmark's results into a named section of a markdown file under docs/.

Several scripts can share one page: each owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``
and rewrites only that, so rerunning one script never erases another's figures.
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import subprocess
from datetime import date
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parent.parent / "docs"


def code_state(root: Path | None = None) -> str:
    """The commit the code was run from: ``abc1234``, or ``abc1234 with uncommitted changes`` when any file
    outside ``docs/`` (which benchmarks write) differs from it, tracked or untracked (ignored files aside: run
    folders, caches). A figure made from code that is not committed cannot be reproduced from the commit alone,
    and the stamp says so. ``unknown`` outside a git checkout."""
    root = Path(root or DOCS.parent)
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", ":/",
                                 ":(top,exclude)docs"], capture_output=True, text=True, cwd=root)
    except OSError:
        return "unknown"
    if head.returncode != 0 or status.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if status.stdout.strip() else "")


def machine_line() -> str:
    """One line naming where figures were measured (cores, torch, device, git commit, date)."""
    import os

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (f"Measured {date.today()} on {os.cpu_count()} CPU cores ({platform.machine()}), {device}, "
            f"torch {torch.__version__}, commit {code_state()}.")


def write_section(page: str, name: str, text: str, title: str | None = None) -> Path:
    """Replace (or append) section ``name`` of ``docs/page`` with ``text``; creates the page with ``title``."""
    path = DOCS / page
    DOCS.mkdir(exist_ok=True)
    body = path.read_text() if path.exists() else f"# {title or page}\n\n"
    block = f"<!-- {name}:start -->\n{text.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    body = pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block + "\n"
    path.write_text(body)
    return path


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± sample std`` of ``values * scale`` (default: fractions as percentages; one value: just it)."""
    if len(values) == 1:
        return f"{scale * values[0]:.{digits}f}"
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * statistics.stdev(values):.{digits}f}"


def logged(run_dir: Path, key: str, skip_first: bool = False) -> list[float]:
    """Every value of ``key`` in a run's ``log.jsonl`` (``skip_first``: drop the first, which holds warm-up and
    compilation for ``train/samples_per_s``); empty when the run wrote no log."""
    log = Path(run_dir) / "log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    values = [r[key] for r in rows if key in r]
    return values[1:] if skip_first else values
