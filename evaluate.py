"""Evaluate a trained run: ``python evaluate.py runs/quickstart [key=value ...] [--out eval.json]``.

Reloads the run's saved config and best model, evaluates the eval split and the test split (overall, per
language, with the text and then the image masked), prints a table and writes JSON.

The command lives in ``crossfuse/commands/evaluate.py`` (``crossfuse evaluate ...`` once installed); this script keeps
``python evaluate.py ...`` working in a checkout and under ``accelerate launch``.
"""

from crossfuse.commands.evaluate import main

if __name__ == "__main__":
    from crossfuse.cli import run

    run(main)
