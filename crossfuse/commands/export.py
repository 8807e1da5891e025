"""Export a trained run for deployment: ``python export.py RUN_DIR --kind int8|pruned|onnx [--out DIR] ...``.

* ``int8``: int8 linear layers with torchao (``--parts text,fusion,head``, the default); ``--scheme weight-only``
  (default: float activations) or ``dynamic`` (int8 activations per token; fast only on CPUs whose PyTorch int8
  GEMM is, see docs/deployment.md).
* ``pruned``: ``--method magnitude|structured --sparsity 0.5``, optionally ``--finetune-steps N`` to recover.
* ``onnx``: the whole model as one ONNX graph (``--opset 17``); its agreement with PyTorch on real batches of the
  run's eval split is checked and written to ``export.json``.
* ``onnx-int8``: the same graph with int8 weight matrices (ONNX Runtime dynamic quantization; ``--reduce-range``
  for 7-bit weights on CPUs without VNNI); its logit difference and prediction agreement with the float PyTorch
  model are written to ``export.json``.

Each writes a folder (default ``RUN_DIR/export-KIND``) that ``evaluate.py`` and ``predict.py`` accept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deploy import list_exports, write_export_folder
from deploy.folder import MANIFEST_NAME
from deploy.onnx_export import ATOL, DEFAULT_OPSET
from deploy.parity import onnx_parity
from deploy.quantize import DEFAULT_SCHEME, SCHEMES
from models import MultimodalModel


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by train.py (or a save_pretrained folder)")
    parser.add_argument("--kind", required=True, choices=list_exports())
    parser.add_argument("--out", default=None, help="export folder (default: RUN_DIR/export-KIND)")
    parser.add_argument("--parts", default=None,
                        help="comma-separated parts to quantize/prune: text,vision,fusion,head "
                             "(default: text,fusion,head for int8; all for pruned)")
    parser.add_argument("--scheme", default=DEFAULT_SCHEME, choices=SCHEMES,
                        help="int8: weight-only (float activations) or dynamic (int8 activations per token)")
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights (or rows) to zero")
    parser.add_argument("--method", default="magnitude", choices=["magnitude", "structured"])
    parser.add_argument("--finetune-steps", type=int, default=0, help="recovery fine-tune steps after pruning")
    parser.add_argument("--finetune-override", action="append", default=[],
                        help="dotted config override for the fine-tune (repeatable), e.g. optim.lr=1e-4")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--reduce-range", action="store_true",
                        help="onnx-int8: 7-bit weights (ONNX Runtime's advice for x86 CPUs without VNNI)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out (never a run)")
    parser.add_argument("--parity-batches", type=int, default=2, help="real batches to compare ONNX with PyTorch")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"run folder {run_dir} does not exist (pass the folder train.py wrote under "
                                "run.output_dir, e.g. runs/quickstart)")
    out = Path(args.out) if args.out else run_dir / f"export-{args.kind}"
    options: dict = {}
    if args.parts:
        options["parts"] = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if args.kind == "int8":
        options["scheme"] = args.scheme
    if args.kind == "pruned":
        options.update(sparsity=args.sparsity, method=args.method, finetune_steps=args.finetune_steps,
                       finetune_overrides=args.finetune_override)
    if args.kind in ("onnx", "onnx-int8"):
        options["opset"] = args.opset
    if args.kind == "onnx-int8":
        options["reduce_range"] = args.reduce_range
    model = MultimodalModel.from_pretrained(run_dir).eval()
    write_export_folder(model, run_dir, out, args.kind, overwrite=args.overwrite, **options)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    if args.kind in ("onnx", "onnx-int8") and args.parity_batches > 0 and (run_dir / "config.yaml").is_file():
        atol = ATOL if args.kind == "onnx" else None
        manifest["details"]["parity"] = onnx_parity(run_dir, out, args.parity_batches, atol)
        (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    print(json.dumps({"out": str(out), "kind": args.kind, **{k: v for k, v in manifest["details"].items()
                                                            if k not in ("quantized_layers", "sparsity")}}, indent=2))
    if "sparsity" in manifest["details"]:
        print(f"sparsity achieved: {manifest['details']['sparsity']['overall']:.4f} overall "
              f"(per layer in {out / MANIFEST_NAME})")
    return manifest

