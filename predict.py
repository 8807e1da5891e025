"""Predict with a trained or exported model: JSON lines with class probabilities.

    python predict.py MODEL --jsonl rows.jsonl [--out preds.jsonl]
    python predict.py MODEL --folder images/ [--text "shared text"]
    python predict.py MODEL --image cat.png --text "a cat on a mat"

MODEL is a run folder, a ``save_pretrained`` folder or an export folder (int8, pruned, onnx). Each output line is
``{"id", "text", "image", "prediction", "probabilities": {label: p}}``; multi-label models predict every label
with probability >= 0.5. Batched (``--batch-size``), with a progress bar on stderr.

The command lives in ``crossfuse/commands/predict.py`` (``crossfuse predict ...`` once installed); this script keeps
``python predict.py ...`` working in a checkout.
"""

from crossfuse.commands.predict import main

if __name__ == "__main__":
    from crossfuse.cli import run

    run(main)
