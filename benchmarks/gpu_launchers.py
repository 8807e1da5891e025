"""The quickstart trained on a GPU under every launcher, and with the performance switches on.

Each row is the same job (`configs/experiments/quickstart.yaml`, bf16, 6 epochs, seed 0) started a different way:
plain `python train.py`, and `accelerate launch` with the DeepSpeed ZeRO-2, ZeRO-3 and FSDP configs of
`configs/accelerate/` (as many processes as GPUs; 1 on a one-GPU machine); then a ResNet-18 image tower without
and with `train.compile`, `model.vision.channels_last` and gradient checkpointing of both towers (compile turns
channels_last off: pytorch/pytorch#171622). For each: exit
status, wall time (process start to exit, data generation in the first row), median training samples/s, peak GPU
memory and validation / test accuracy, so a launcher that trains wrongly shows up as a different accuracy.

    python benchmarks/gpu_launchers.py             # on a GPU machine; writes docs/distributed.md
    python benchmarks/gpu_launchers.py --dry-run   # CPU: plain and switches rows, 3 steps; checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import torch  # noqa: E402
from _doc import logged, machine_line, markdown_table, write_section  # noqa: E402

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch"]
RESNET = ["model.vision.name=resnet18", "model.vision.kwargs={}"]
SWITCHES = ["train.compile=true", "model.vision.channels_last=true", "model.vision.gradient_checkpointing=true",
            "model.text.gradient_checkpointing=true"]


def rows_to_run(gpus: int) -> dict[str, tuple[list[str], list[str]]]:
    """Row name -> (command up to `train.py`, overrides after the experiment file)."""
    procs = ["--num_processes", str(max(gpus, 1))]
    return {
        "python train.py": ([sys.executable, "train.py"], []),
        "accelerate launch, DeepSpeed ZeRO-2": (
            LAUNCH + ["--config_file", "configs/accelerate/deepspeed_zero2.yaml", *procs, "train.py"], []),
        "accelerate launch, DeepSpeed ZeRO-3": (
            LAUNCH + ["--config_file", "configs/accelerate/deepspeed_zero3.yaml", *procs, "train.py"], []),
        "accelerate launch, FSDP2": (
            LAUNCH + ["--config_file", "configs/accelerate/fsdp.yaml", *procs, "train.py"], []),
        "python train.py, resnet18 tower": ([sys.executable, "train.py"], RESNET),
        "python train.py, resnet18 tower, compile + grad. checkpointing (+ channels_last, turned off by compile)":
            ([sys.executable, "train.py"], RESNET + SWITCHES),
    }


def summarise(run_dir: Path) -> dict[str, str]:
    """Median samples/s (first logged interval dropped: warm-up, compilation), peak memory, val/test accuracy."""
    out = {"samples/s": "-", "memory": "-", "val": "-", "test": "-"}
    speeds, memory = logged(run_dir, "train/samples_per_s", skip_first=True), logged(run_dir, "gpu/max_memory_gb")
    if speeds:
        out["samples/s"] = f"{statistics.median(speeds):.0f}"
    if memory:
        out["memory"] = f"{max(memory):.2f}"
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        results = json.loads(metrics.read_text())["results"]
        for split in ("val", "test"):
            if split in results:
                out[split] = f"{results[split]['overall']['accuracy'] * 100:.1f}%"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/gpu_launchers", help="run folders and one log per row")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per row")
    parser.add_argument("--epochs", type=int, default=6, help="train.epochs of every row")
    parser.add_argument("--dry-run", action="store_true", help="CPU, 3 steps, plain and switches rows, no docs")
    args = parser.parse_args(argv)
    gpus = torch.cuda.device_count()
    if not gpus and not args.dry_run:
        sys.exit("gpu_launchers.py measures GPU launches and no GPU is visible; use --dry-run to check it on CPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [f"run.output_dir={out}", "run.overwrite=true",
              "run.progress_bar=false", f"train.epochs={args.epochs}", "train.mixed_precision=bf16",
              "data.num_workers=4"]
    plan = rows_to_run(gpus)
    if args.dry_run:
        common[-1:] = ["data.num_workers=0", "train.max_steps=3"]
        plan = {k: v for k, v in plan.items() if "accelerate" not in k}
    table = []
    for i, (name, (cmd, extra)) in enumerate(plan.items()):
        run_name = f"row{i}"
        log = out / f"{run_name}.log"
        start = time.perf_counter()
        try:
            with open(log, "w") as fh:
                argv = [*cmd, "configs/experiments/quickstart.yaml", *common, *extra, f"run.name={run_name}"]
                rc = subprocess.run(argv, cwd=ROOT, stdout=fh,
                                    stderr=subprocess.STDOUT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = f"timeout {args.timeout}s"
        wall = time.perf_counter() - start
        s = summarise(out / run_name)
        status = "ok" if rc == 0 else f"failed ({rc}; {log})"
        table.append([name, status, f"{wall:.0f}", s["samples/s"], s["memory"], s["val"], s["test"]])
        print(table[-1], flush=True)
        if rc != 0:
            print("".join(log.read_text().splitlines(keepends=True)[-15:]), flush=True)
    text = "\n".join([
        "## Launchers checked on a GPU (`benchmarks/gpu_launchers.py`)",
        "",
        f"The quickstart (bf16, {args.epochs} epochs, seed 0, `data.num_workers=4`) on {max(gpus, 1)} GPU(s), one "
        "row per launcher; `--num_processes` is the number of GPUs. Wall time is process start to exit (the first "
        "row also generates the data); samples/s is the median over logging intervals after the first; memory is "
        "`gpu/max_memory_gb` from the run's log. Command: "
        f"`python benchmarks/gpu_launchers.py {' '.join(argv if argv is not None else sys.argv[1:])}`.",
        "",
        markdown_table(["launch", "status", "wall s", "samples/s", "peak GiB", "val acc", "test acc"], table),
        "",
        machine_line(),
    ])
    print(text)
    if not args.dry_run:
        print(f"written to {write_section('distributed.md', 'gpu_launchers', text)}")


if __name__ == "__main__":
    main()
