"""Merge trained models: ``python merge.py configs/merge/ties.yaml [key=value ...]``.

The recipe names a method (``linear``, ``task_arithmetic``, ``ties``, ``dare``, ``slerp``, ``fisher`` or
``greedy_soup``), the models (run folders), an optional base, the method's ``params`` and per-key ``policies``.
The result is a normal run folder (``OUTPUT/model/``, ``OUTPUT/config.yaml``, ``OUTPUT/merge.yaml``): evaluate it
with ``python evaluate.py OUTPUT``.

The command lives in ``crossfuse/commands/merge.py`` (``crossfuse merge ...`` once installed); this script keeps
``python merge.py ...`` working in a checkout.
"""

from crossfuse.commands.merge import main

if __name__ == "__main__":
    from crossfuse.cli import run

    run(main)
