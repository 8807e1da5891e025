"""Peak memory and time of merging N checkpoints, streamed tensor by tensor, against loading them all.

Synthetic checkpoints (many 1024x1024 float32 tensors, the shape of a transformer's weights) of several sizes are
merged with ``merge_checkpoints`` (streaming, safetensors read one tensor at a time) and with the naive approach
(``load_file`` every checkpoint, then average). Each measurement runs in a fresh subprocess and reports its peak
resident memory above the process's footprint after imports (``VmHWM``, which also counts file pages mapped by
safetensors), in units of one model's size.

Run: ``OMP_NUM_THREADS=1 python benchmarks/merging_memory.py`` (writes docs/merging.md; about 70 s of CPU time,
9.5 minutes of wall time when measured on a heavily shared 2-core machine, mostly writing the checkpoints).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402
from _doc import machine_line, markdown_table, write_section  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

TENSOR = (1024, 1024)


def make_checkpoints(root: Path, n_models: int, mb: int) -> list[Path]:
    n_tensors = max(1, mb // 4)  # 4 MB per float32 1024x1024 tensor
    paths = []
    for i in range(n_models):
        d = root / f"m{i}"
        d.mkdir(parents=True)
        gen = torch.Generator().manual_seed(i)
        save_file({f"layer.{j}.weight": torch.randn(TENSOR, generator=gen) for j in range(n_tensors)},
                  str(d / "model.safetensors"))
        (d / "crossfuse.json").write_text(json.dumps({"label_names": ["a", "b"], "multi_label": False}))
        paths.append(d)
    return paths


def peak_rss() -> int:
    """Bytes: this process's resident high-water mark since it was started.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a forked and exec'd child, so a child of this
    benchmark (which has just written the checkpoints) would start "at" the parent's peak and hide its own growth
    (a bare ``python -c pass`` run from a 1 GB parent reports 1037 MiB). ``VmHWM`` belongs to the child's own
    address space.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # not Linux: the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def measure(mode: str, paths: list[str]) -> dict:
    """Runs in the child: merge, report seconds and peak RSS growth (bytes)."""
    from merging import merge_checkpoints

    before = peak_rss()
    t0 = time.perf_counter()
    if mode == "streaming":
        merged = merge_checkpoints(paths, "linear")
    else:
        states = [load_file(f"{p}/model.safetensors") for p in paths]
        merged = {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    return {"seconds": seconds, "peak_growth": peak - before, "tensors": len(merged)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[64, 128, 256], help="size of one model")
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1:])))
        return
    rows = []
    for mb in args.sizes_mb:
        with tempfile.TemporaryDirectory() as tmp:
            paths = [str(p) for p in make_checkpoints(Path(tmp), args.models, mb)]
            res = {}
            for mode in ("naive", "streaming"):
                proc = subprocess.run([sys.executable, __file__, "--child", mode, *paths], capture_output=True,
                                      text=True, check=True)
                res[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            size = mb * 2**20
            n, s = res["naive"], res["streaming"]
            rows.append([f"{mb} MB", args.models, f"{n['peak_growth'] / size:.2f}", f"{s['peak_growth'] / size:.2f}",
                         f"{s['peak_growth'] / max(1, n['peak_growth']):.2f}", f"{n['seconds']:.2f}",
                         f"{s['seconds']:.2f}", f"{s['seconds'] / n['seconds']:.2f}"])
            print(rows[-1], flush=True)
    text = "\n".join([
        "### Memory and time of merging (measured)", "",
        machine_line() + f" `python benchmarks/merging_memory.py` (linear merge of {args.models} synthetic "
        "float32 checkpoints of 1024x1024 tensors; peak RSS growth in units of one model).", "",
        markdown_table(["model size", "models", "naive peak (models)", "streaming peak (models)",
                        "streaming / naive memory", "naive s", "streaming s", "streaming / naive time"], rows),
    ])
    write_section("merging.md", "merging_memory", text, title="Merging")
    print(text)


if __name__ == "__main__":
    main()
