"""Export a trained run for deployment: ``python export.py RUN_DIR --kind int8|pruned|onnx [--out DIR] ...``.

* ``int8``: int8 linear layers with torchao (``--parts text,fusion,head``, the default; ``--scheme weight-only``
  or ``dynamic``).
* ``pruned``: ``--method magnitude|structured --sparsity 0.5``, optionally ``--finetune-steps N`` to recover.
* ``onnx``: the whole model as one ONNX graph (``--opset 17``); its agreement with PyTorch on real batches of the
  run's eval split is checked and written to ``export.json``.
* ``onnx-int8``: the same graph with int8 weight matrices (ONNX Runtime dynamic quantization; ``--reduce-range``
  for 7-bit weights on CPUs without VNNI); its logit difference and prediction agreement with the float PyTorch
  model are written to ``export.json``.

Each writes a folder (default ``RUN_DIR/export-KIND``) that ``evaluate.py`` and ``predict.py`` accept.

The command lives in ``crossfuse/commands/export.py`` (``crossfuse export ...`` once installed); this script keeps
``python export.py ...`` working in a checkout.
"""

from crossfuse.commands.export import main

if __name__ == "__main__":
    from crossfuse.cli import run

    run(main)
