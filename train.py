"""Train a model: ``python train.py configs/experiments/quickstart.yaml [key=value ...] [--resume latest]``.

Also runs under ``accelerate launch train.py ...`` for multi-process / multi-GPU / DeepSpeed / FSDP training.

The command lives in ``crossfuse/commands/train.py`` (``crossfuse train ...`` once installed); this script keeps
``python train.py ...`` working in a checkout and under ``accelerate launch``.
"""

from crossfuse.commands.train import main

if __name__ == "__main__":
    from crossfuse.cli import run

    run(main)
