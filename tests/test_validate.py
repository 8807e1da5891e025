"""validate.py: a pre-flight report of every configured split, without training."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from test_datasets_layouts import EXPERIMENTS, jsonl, make_hateful_memes

from crossfuse.commands import validate

ROOT = Path(__file__).resolve().parent.parent


def _args(root: Path) -> list[str]:
    return [str(EXPERIMENTS / "hateful_memes.yaml"), f"data.root={root}"]


def test_clean_dataset_reports_every_split(tmp_path, capsys):
    root = make_hateful_memes(tmp_path)
    report = validate.main(_args(root) + ["--json", str(tmp_path / "report.json")])
    assert validate.is_clean(report) and list(report) == ["train", "dev_seen", "test_seen"]
    assert report["train"]["labels"] == {"not_hateful": 6, "hateful": 6} and report["train"]["with_image"] == 12
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert "[train] 12 of 12 rows usable" in capsys.readouterr().out


def test_bad_rows_are_counted_with_file_and_line(tmp_path, capsys):
    root = make_hateful_memes(tmp_path)
    rows = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    rows[0]["text"] = ""
    rows[4]["img"] = "img/missing.png"
    (root / "img" / "00007.png").write_bytes(b"truncated")  # train row 7: only found by decoding
    jsonl(root / "train.jsonl", rows[:9] + ["{not json"] + rows[9:])
    report = validate.main(_args(root) + ["data.test_split=test_unseen"])
    train = report["train"]
    assert train["rows"] == 9 and train["skipped"] == {"empty_text": 1, "missing_image": 1, "unreadable_image": 1,
                                                       "malformed_line": 1}
    assert train["examples"]["unreadable_image"] == [
        f"{root / 'train.jsonl'}:7: cannot read image {root / 'img' / '00007.png'}: "
        + train["examples"]["unreadable_image"][0].split(": ", 2)[2]]
    assert report["test_unseen"]["unlabelled"] == 4 and not validate.is_clean(report)
    out = capsys.readouterr().out
    assert "[train] 9 of 13 rows usable" in out and f"{root / 'train.jsonl'}:10: not valid JSON" in out
    assert validate.main(_args(root) + ["--no-decode"])["train"]["skipped"].get("unreadable_image") is None


def test_exit_status_gates_a_job(tmp_path, monkeypatch, capsys):
    root = make_hateful_memes(tmp_path)
    (root / "img" / "00001.png").unlink()
    monkeypatch.setattr(sys, "argv", ["validate.py", *_args(root)])
    with pytest.raises(SystemExit) as info:  # run as a script, in this process
        runpy.run_path(str(ROOT / "validate.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert info.value.code == 1 and "[train] 11 of 12 rows usable" in out and "missing image: 1 rows" in out
