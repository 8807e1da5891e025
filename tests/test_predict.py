"""predict.py on the tiny run and its ONNX export: jsonl, a folder, one image + text; JSON lines with
probabilities, in input order, the same from every runtime; bad rows named by file and line."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from crossfuse.commands import export, predict
from data import DataError


@pytest.fixture(scope="module")
def images(tiny_run):
    root = yaml.safe_load((tiny_run / "config.yaml").read_text())["data"]["root"]
    return sorted((Path(root) / "img").glob("test_*.png"))[:3]


@pytest.fixture(scope="module")
def rows_file(images, tmp_path_factory):
    path = tmp_path_factory.mktemp("pred") / "rows.jsonl"
    rows = [{"id": "both", "text": "there is a red square", "img": str(images[0])},
            {"id": "text", "text": "a blue circle on the left"},
            {"id": "image", "image": str(images[1])}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_gives_probabilities_in_order_and_matches_the_onnx_export(tiny_run, rows_file, tmp_path):
    out = tmp_path / "p.jsonl"
    rows = predict.main([str(tiny_run), "--jsonl", str(rows_file), "--out", str(out), "--batch-size", "2",
                         "--no-progress"])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == rows and [r["id"] for r in rows] == ["both", "text", "image"]
    labels = json.loads((tiny_run / "model" / "crossfuse.json").read_text())["label_names"]
    for row in rows:
        assert set(row["probabilities"]) == set(labels)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert row["prediction"] == max(row["probabilities"], key=row["probabilities"].get)
    assert rows[1]["image"] is None and rows[2]["text"] is None
    export.main([str(tiny_run), "--kind", "onnx", "--out", str(tmp_path / "onnx"), "--parity-batches", "0"])
    onnx_rows = predict.main([str(tmp_path / "onnx"), "--jsonl", str(rows_file), "--out", str(tmp_path / "o.jsonl"),
                              "--no-progress"])
    for a, b in zip(rows, onnx_rows):
        assert a["prediction"] == b["prediction"]
        assert torch.allclose(torch.tensor(list(a["probabilities"].values())),
                              torch.tensor(list(b["probabilities"].values())), atol=1e-4)


def test_folder_reads_captions_beside_images(tiny_run, images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(images[:2]):
        (folder / f"im{i}.png").write_bytes(image.read_bytes())
    (folder / "im0.txt").write_text("a green triangle\n")
    rows = predict.main([str(tiny_run), "--folder", str(folder), "--text", "shared", "--out",
                         str(tmp_path / "f.jsonl"), "--no-progress"])
    assert [(r["id"], r["text"]) for r in rows] == [("im0", "a green triangle"), ("im1", "shared")]


def test_single_image_and_text_from_the_command_line(tiny_run, images, tmp_path):
    (row,) = predict.main([str(tiny_run), "--image", str(images[0]), "--text", "a red square",
                           "--out", str(tmp_path / "s.jsonl"), "--no-progress"])
    assert row["text"] == "a red square" and row["image"].endswith(images[0].name)


def test_bad_rows_are_named_by_file_and_line(tiny_run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"text": "x", "img": "missing.png"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:2.*missing.png"):
        predict.main([str(tiny_run), "--jsonl", str(bad), "--no-progress"])
    bad.write_text(json.dumps({"id": 1}) + "\n")
    with pytest.raises(DataError, match="neither text nor an image"):
        predict.main([str(tiny_run), "--jsonl", str(bad), "--no-progress"])
