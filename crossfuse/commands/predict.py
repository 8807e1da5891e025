"""Predict with a trained or exported model: JSON lines with class probabilities.

    python predict.py MODEL --jsonl rows.jsonl [--out preds.jsonl]
    python predict.py MODEL --folder images/ [--text "shared text"]
    python predict.py MODEL --image cat.png --text "a cat on a mat"

MODEL is a run folder, a ``save_pretrained`` folder or an export folder (int8, pruned, onnx). Each output line is
``{"id", "text", "image", "prediction", "probabilities": {label: p}}``; multi-label models predict every label
whose probability reaches its threshold (tuned on the eval split and saved with the model, as evaluate.py uses).
Batched (``--batch-size``), with a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from deploy import load_for_inference, resolve_folder
from deploy.inputs import prediction_loader, records_from_args, records_from_folder, records_from_jsonl
from models.errors import ModelNotAvailableError
from models.folder import TOKENIZER, load_thresholds, load_tokenizer


def _max_length(folder: Path, default: int) -> int:
    """The run's ``data.max_text_length`` (saved with it), so text is truncated as in training."""
    config = folder / "config.yaml"
    if not config.is_file():
        config = folder.parent / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        return int(OmegaConf.load(config).data.get("max_text_length", default))
    return default


@torch.no_grad()
def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="run folder, save_pretrained folder or export folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--jsonl", help='rows {"id"?, "text"?, "img"?}; image paths relative to the file')
    source.add_argument("--folder", help="a folder of images (text from IMAGE.txt beside each, else --text)")
    source.add_argument("--image", help="one image (with --text, or alone)")
    parser.add_argument("--text", default=None, help="the text for --image, or the default text for --folder")
    parser.add_argument("--out", default=None, help="write JSON lines here (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=None, help="token limit (default: the run's own)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.jsonl:
        records = records_from_jsonl(args.jsonl)
    elif args.folder:
        records = records_from_folder(args.folder, args.text)
    elif args.image is None and args.text is None:
        parser.error("give --jsonl, --folder, or --image and/or --text")
    else:
        records = records_from_args(args.image, args.text)
    folder = resolve_folder(args.model)
    model = load_for_inference(folder)
    tokenizer = load_tokenizer(folder) if "text" in model.modalities else None
    if "text" in model.modalities and tokenizer is None:
        raise ModelNotAvailableError(f"{folder / TOKENIZER} is missing: the model reads text and its tokenizer is "
                                     "saved there by train.py; copy the run's model/tokenizer/ folder back")
    loader = prediction_loader(records, model, tokenizer, args.max_length or _max_length(folder, 64), args.batch_size)
    names = model.label_names
    # Multi-label: the per-label thresholds tuned on the eval split and saved with the model, as evaluate.py uses.
    thresholds = np.broadcast_to(load_thresholds(folder, names), (len(names),)).tolist()
    rows = []
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for batch in tqdm(loader, desc="predict", unit="batch", disable=args.no_progress, file=sys.stderr):
            logits = model(batch)["logits"].float()
            probs = torch.sigmoid(logits) if model.multi_label else torch.softmax(logits, -1)
            for i, p in zip(batch["index"].tolist(), probs.tolist()):
                record = records[i]
                if model.multi_label:
                    prediction: str | list[str] = [n for n, q, t in zip(names, p, thresholds) if q >= t]
                else:
                    prediction = names[max(range(len(p)), key=p.__getitem__)]
                row = {"id": record["id"], "text": record["text"], "image": record["image"],
                       "prediction": prediction, "probabilities": {n: round(q, 6) for n, q in zip(names, p)}}
                rows.append(row)
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if args.out:
            out.close()
    return rows

