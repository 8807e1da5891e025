"""Check a dataset before training: ``python validate.py configs/experiments/hateful_memes.yaml [key=value ...]``.

Reads every configured split (train, eval, test) with ``data.on_error=skip`` and, where the dataset supports it,
every image decoded, then prints per split the usable rows, the rejected rows per reason with ``file:line``
examples, the label map and counts, and duplicate ids. Exits with status 1 if any row would be rejected, an id
names several rows, or a split cannot be read (0 if the data is clean), so it can gate a job script.

The command lives in ``crossfuse/commands/validate.py`` (``crossfuse validate ...`` once installed); this script keeps
``python validate.py ...`` working in a checkout.
"""

from crossfuse.commands.validate import exit_status, main

if __name__ == "__main__":
    from crossfuse.cli import run

    run(main, exit_status=exit_status)
