"""Reading speed of the dataset readers, and what the pre-flight image check costs.

``python benchmarks/dataset_readers.py [--rows 20000] [--images 2000]`` writes the ``dataset_readers`` section of
docs/datasets.md. Ratios are against the ``jsonl`` reader (the original Hateful-Memes/MMBT reader) on the same
rows, measured in the same run; the best of ``--repeats`` timings is kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _doc import machine_line, markdown_table, write_section  # noqa: E402
from PIL import Image

from crossfuse.commands.validate import main as validate_main  # noqa: E402
from data import create_dataset  # noqa: E402


def make_rows(root: Path, rows: int, images: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "img" / f"{i:06d}.png")
    records = [{"id": i, "img": f"img/{i % images:06d}.png", "text": f"a caption for meme number {i}, fairly short",
                "label": i % 2} for i in range(rows)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with open(root / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "text", "label"])
        writer.writerows([r["id"], r["img"], r["text"], r["label"]] for r in records)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        make_rows(root, args.rows, args.images, args.size)
        table = {"labels": ["0", "1"]}
        cases = [
            ("jsonl (baseline)", lambda: create_dataset("jsonl", str(root), "train")),
            ("hateful_memes", lambda: create_dataset("hateful_memes", str(root), "train")),
            ("table, CSV", lambda: create_dataset("table", str(root), "train", file="{split}.csv", **table)),
            ("table, JSON-lines", lambda: create_dataset("table", str(root), "train", file="{split}.jsonl",
                                                         image_column="img", **table)),
            ("hateful_memes + check_images", lambda: create_dataset("hateful_memes", str(root), "train",
                                                                    check_images=True)),
        ]
        timings = {name: best(fn, args.repeats) for name, fn in cases}
        (root / "train.csv").unlink()  # validate reads train/dev/test of the config; point all three at train
        cfg = [str(Path(__file__).resolve().parent.parent / "configs/experiments/hateful_memes.yaml"),
               f"data.root={root}", "data.eval_split=train", "data.test_split=null"]
        t0 = time.perf_counter()
        validate_main(cfg)
        timings["validate.py (train + eval split, decoding)"] = time.perf_counter() - t0
    base = timings["jsonl (baseline)"]
    reads = {k: args.rows * (2 if k.startswith("validate") else 1) for k in timings}
    rows = [[name, f"{t:.3f}", f"{reads[name] / t:,.0f}", f"{t / base:.2f}x"] for name, t in timings.items()]
    text = "\n".join([
        "### Reader speed",
        "",
        f"{args.rows:,} rows over {args.images:,} distinct {args.size}x{args.size} PNGs, one process "
        f"(`python benchmarks/dataset_readers.py --rows {args.rows} --images {args.images}`, OMP_NUM_THREADS=1). "
        "Time relative to the `jsonl` reader on the same rows in the same run; best of "
        f"{args.repeats} (validate.py: one run).",
        "",
        markdown_table(["reader", "seconds", "rows/s", "vs jsonl"], rows),
        "",
        machine_line(),
    ])
    path = write_section("datasets.md", "dataset_readers", text, title="Datasets")
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
