"""Side by side with mergekit on the same tensors: where our merge primitives agree, and why they differ where not.

mergekit is not a dependency: it runs in its own virtualenv (``--mergekit-python``, e.g. one made with
``python -m venv /work/venv-mergekit && /work/venv-mergekit/bin/pip install mergekit``), in a subprocess that reads
the tensors this script saves and writes mergekit's results back, so the two never share an interpreter.
Compared (mergekit's functions called directly, on a 64x256 float32 task vector and pairs of them):

* TIES trimming: our ``ties.trim`` against mergekit's ``sparsify.magnitude`` (the kept count: ``round`` vs ``int``);
* TIES sign election with zero sums: ours elects no sign (nothing kept), mergekit's ``get_mask`` elects ``+``;
* Breadcrumbs: our ``breadcrumb_mask`` against ``sparsify.magnitude_outliers``;
* DARE / DELLA rescaling: ours divides survivors by their keep probability (the papers' unbiased rescaling),
  mergekit matches the L1 norm of the vector (``RescaleNorm.l1``); DELLA's keep probabilities: ours span
  ``epsilon`` around ``density`` over the whole tensor, mergekit's span ``2 * epsilon`` within each row;
* SLERP: ours interpolates the whole flattened tensor, mergekit's (0.1.5) each row, with its own colinearity
  threshold (``dot > 0.9995``, ours ``|cos| > 1 - 1e-4``).

Then whole models, each tool through its own command line: N = 2, 4, 8 RoBERTa-base-shaped checkpoints (125M
parameters, 499 MB in float32; random weights, the maths does not care) saved as folders that both read
(``config.json`` + ``model.safetensors`` for mergekit, plus ``crossfuse.json`` for us), merged by ``python merge.py``
and by ``mergekit-yaml`` with linear averaging and with TIES (density 0.2, one more checkpoint as the base). Each
merge runs in a fresh process started by a bare interpreter (a child forked from this script would inherit its
memory high-water mark); reported: wall time, the process's peak resident memory (``ru_maxrss`` from ``wait4``; it
counts the interpreter and library imports too, which the ``N = 0`` line of each tool measures alone, so compare
growth), and the largest difference between the two outputs.

Run: ``python benchmarks/mergekit_compare.py --mergekit-python /work/venv-mergekit/bin/python`` (writes two
sections of docs/merging.md; the primitives take seconds, the whole models a few minutes and 5 GB of disk under
``--workdir``, the inputs, kept for reruns). ``--no-scaling`` skips the whole models.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _doc import machine_line, markdown_table, write_section  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from merging.methods.breadcrumbs import breadcrumb_mask  # noqa: E402
from merging.methods.della import keep_probabilities  # noqa: E402
from merging.methods.slerp import slerp  # noqa: E402
from merging.methods.ties import ties, trim  # noqa: E402

# Run by mergekit's interpreter: reads inputs.safetensors, writes mergekit.safetensors and mergekit.json.
MERGEKIT_SIDE = r"""
import json, sys
import torch
from safetensors.torch import load_file, save_file
import mergekit
from mergekit.sparsify import RescaleNorm, bernoulli, della_magprune, magnitude, magnitude_outliers
from mergekit.merge_methods.generalized_task_arithmetic import get_mask
from mergekit.merge_methods.slerp import slerp
folder = sys.argv[1]
x = load_file(folder + "/inputs.safetensors")
d, a, b = x["delta"], x["a"], x["b"]
out = {
    "trim": magnitude(d, density=0.2),
    "trim_odd": magnitude(x["odd"], density=0.5),
    "breadcrumbs": magnitude_outliers(d, density=0.1, gamma=0.01),
    "sign_mask": get_mask(torch.stack([x["zero_a"], x["zero_b"]]), method="sum").float(),
    "slerp": slerp(torch.tensor(0.3), a, b),
    "slerp_near": slerp(torch.tensor(0.3), a, a * 1.0001 + 1e-3 * b),
}
torch.manual_seed(0)
out["dare_l1"] = bernoulli(d, density=0.5, rescale_norm=RescaleNorm.l1)
out["della_l1"] = della_magprune(d, density=0.6, epsilon=0.1, rescale_norm=RescaleNorm.l1)
means = torch.stack([della_magprune(d, density=0.6, epsilon=0.1) for _ in range(2000)])
out["della_keep"] = (means != 0).float().mean(0)  # mergekit's empirical keep probability per entry
save_file({k: v.contiguous().float() for k, v in out.items()}, folder + "/mergekit.safetensors")
from importlib.metadata import version
json.dump({"version": version("mergekit")}, open(folder + "/mergekit.json", "w"))
"""


ROOT = Path(__file__).resolve().parent.parent
ROBERTA_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def roberta_folders(root: Path, n: int, shape: dict) -> list[Path]:
    """``n + 1`` checkpoints of one RoBERTa shape (the last is the base): base + small noise each, in folders that
    mergekit (``config.json``) and crossfuse (``crossfuse.json``) both read.

    RoBERTa, not BERT: mergekit 0.1.5 fails on its own BERT definition (``plan.py`` adds a tuple of aliases to a
    list); tensors are named as its RoBERTa definition expects (``roberta.`` prefix, ``pooler.`` without)."""
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(**shape, architectures=["RobertaModel"])
    torch.manual_seed(0)
    base = {(k if k.startswith("pooler.") else f"roberta.{k}"): v.contiguous()
            for k, v in RobertaModel(config).state_dict().items()}
    folders = []
    for i in range(n + 1):
        folder = root / (f"m{i}" if i < n else "base")
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "model.safetensors").is_file():
            gen = torch.Generator().manual_seed(i + 1)
            state = base if i == n else {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
            save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
            config.to_json_file(str(folder / "config.json"))
            (folder / "crossfuse.json").write_text(json.dumps({"label_names": ["a", "b"], "multi_label": False}))
        folders.append(folder)
    return folders


# Linux carries a process's memory high-water mark through fork and exec, so a merge started straight from this
# script (which holds torch and the inputs it wrote) would report this script's peak as its own. A bare interpreter
# starts each merge instead and reports that child's peak on its last line.
TRAMPOLINE = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); _, s, u = os.wait4(p.pid, 0); "
              "print(f'peak-rss-kib {os.waitstatus_to_exitcode(s)} {u.ru_maxrss}', flush=True)")


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """Run ``cmd`` in a fresh process: (wall seconds, peak RSS in GB of that process alone)."""
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", TRAMPOLINE, *cmd], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    *output, last = run.stdout.rstrip().splitlines() or [""]
    tag, code, kib = (last.split() + ["", "", ""])[:3]
    if run.returncode != 0 or tag != "peak-rss-kib" or code != "0":
        raise SystemExit(f"{' '.join(cmd)} failed:\n" + "\n".join(output)[-3000:])
    return wall, int(kib) / 2**20  # KiB -> GiB


def mergekit_recipe(method: str, models: list[Path], base: Path) -> str:
    if method == "linear":
        lines = ["merge_method: linear", "dtype: float32", "models:"]
        lines += [f"  - model: {m}\n    parameters: {{weight: 1.0}}" for m in models]
    else:  # TIES as in the paper: trim to density, elect signs, disjoint mean, scale 1
        lines = ["merge_method: ties", "dtype: float32", f"base_model: {base}", "parameters: {normalize: true}",
                 "models:"]
        lines += [f"  - model: {m}\n    parameters: {{weight: 1.0, density: 0.2}}" for m in models]
    return "\n".join(lines) + "\n"


def max_difference(ours: Path, theirs: Path) -> float:
    """Largest absolute difference between the two merged models; every tensor must be in both."""
    from safetensors import safe_open

    worst, seen = 0.0, set()
    with safe_open(str(ours / "model" / "model.safetensors"), "pt") as mine:
        for f in sorted(theirs.glob("*.safetensors")):
            with safe_open(str(f), "pt") as other:
                for key in other.keys():
                    worst = max(worst, float((mine.get_tensor(key) - other.get_tensor(key)).abs().max()))
                    seen.add(key)
        if seen != set(mine.keys()):
            raise SystemExit(f"mergekit's output in {theirs} holds {len(seen)} of our {len(set(mine.keys()))} "
                             f"tensors; missing e.g. {sorted(set(mine.keys()) - seen)[:3]}")
    return worst


def scaling(mergekit_python: str, workdir: Path, sizes: list[int], shape: dict) -> tuple[str, list[list]]:
    """Wall time and peak memory of whole-model merges through both command lines, N inputs each."""
    folders = roberta_folders(workdir / "inputs", max(sizes), shape)
    model_gb = (folders[0] / "model.safetensors").stat().st_size / 2**30
    mergekit_yaml = str(Path(mergekit_python).parent / "mergekit-yaml")
    rows = []
    # N = 0: each tool's footprint before any tensor (interpreter and imports), the baseline of the peaks below.
    idle_ours = timed([sys.executable, "-c", "import crossfuse.commands.merge"], cwd=ROOT)
    idle_theirs = timed([mergekit_python, "-c", "import mergekit.merge, mergekit.options"])
    rows.append(["imports only", 0, f"{idle_ours[0]:.1f}", f"{idle_theirs[0]:.1f}", "",
                 f"{idle_ours[1]:.2f}", f"{idle_theirs[1]:.2f}", ""])
    for method in ("linear", "ties"):
        for n in sizes:
            models, base = folders[:n], folders[-1]
            out_ours, out_theirs = workdir / f"ours_{method}_{n}", workdir / f"mergekit_{method}_{n}"
            argv = [sys.executable, "merge.py", f"method={method}", f"models=[{','.join(map(str, models))}]",
                    f"output={out_ours}"] + ([f"base={base}", "params.density=0.2"] if method == "ties" else [])
            argv.append("--overwrite")
            ours = timed(argv, cwd=ROOT)
            recipe = workdir / f"{method}_{n}.yml"
            recipe.write_text(mergekit_recipe(method, models, base))
            theirs = timed([mergekit_yaml, str(recipe), str(out_theirs), "--allow-crimes"])
            diff = max_difference(out_ours, out_theirs)
            shutil.rmtree(out_ours), shutil.rmtree(out_theirs)  # only the inputs are kept for reruns
            rows.append([method, n, f"{ours[0]:.1f}", f"{theirs[0]:.1f}", f"{ours[0] / theirs[0]:.2f}",
                         f"{ours[1]:.2f}", f"{theirs[1]:.2f}", f"{diff:.1e}"])
            print(rows[-1], flush=True)
    return f"{model_gb:.2f}", rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mergekit-python", required=True, help="python of a virtualenv with mergekit installed")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--no-scaling", action="store_true", help="compare the primitives only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8], help="numbers of inputs merged")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_mergekit",
                        help="where the whole-model checkpoints and outputs go (kept for reruns)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide RoBERTa (a quick check)")
    args = parser.parse_args(argv)
    stamp = machine_line()
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(64, 256, generator=gen)
    a, b = torch.randn(64, 256, generator=gen), torch.randn(64, 256, generator=gen)
    odd = torch.randn(7, generator=gen)  # density * n = 3.5: the two rounding conventions differ
    zero_a, zero_b = torch.tensor([2.0, -1.0, 1.0]), torch.tensor([-2.0, -1.0, 1.0])  # sum 0, -2, 2
    with tempfile.TemporaryDirectory() as tmp:
        save_file({"delta": delta, "a": a, "b": b, "odd": odd, "zero_a": zero_a, "zero_b": zero_b},
                  f"{tmp}/inputs.safetensors")
        run = subprocess.run([args.mergekit_python, "-c", MERGEKIT_SIDE, tmp], capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"mergekit side failed:\n{run.stderr[-3000:]}")
        theirs = load_file(f"{tmp}/mergekit.safetensors")
        version = json.loads(Path(f"{tmp}/mergekit.json").read_text())["version"]

    rows = []

    def kept(x):
        return int((x != 0).sum())

    mine = trim(delta, 0.2)
    rows.append(["TIES trim, density 0.2 of 16384", f"{kept(mine)} kept", f"{kept(theirs['trim'])} kept",
                 f"{int(((mine != 0) & (theirs['trim'] != 0)).sum())} entries in common",
                 "ours rounds density x n (3276.8 -> 3277), mergekit truncates (3276); the top ones are the same"])
    rows.append(["TIES trim, density 0.5 of 7", f"{kept(trim(odd, 0.5))} kept", f"{kept(theirs['trim_odd'])} kept",
                 "", "ours rounds density x n (4), mergekit truncates (3)"])
    ours_ties = ties([zero_a, zero_b], torch.zeros(3), density=1.0)
    rows.append(["TIES elect, entry whose deltas sum to 0 (+2, -2)", f"merged {ours_ties[0].item():+.1f}",
                 f"mask keeps {int(theirs['sign_mask'][:, 0].sum())} of 2 (elects +)", "",
                 "zero-sum sign: ours elects none (sign 0), mergekit elects +; other entries agree"])
    mask = breadcrumb_mask(delta, 0.1, 0.01)
    rows.append(["Breadcrumbs, density 0.1, gamma 0.01", f"{kept(mask)} kept", f"{kept(theirs['breadcrumbs'])} kept",
                 f"{int((mask & (theirs['breadcrumbs'] != 0)).sum())} entries in common",
                 "ours round(), mergekit int(); both drop the top gamma and the bottom tail"])
    l1_ratio = float(theirs["dare_l1"].abs().sum() / delta.abs().sum())
    nz = theirs["dare_l1"] != 0
    scale = float((theirs["dare_l1"][nz] / delta[nz]).mean())
    rows.append(["DARE rescaling, p 0.5", "survivors x 1/(1-p) = 2.000", f"survivors x {scale:.3f}",
                 f"mergekit L1 after / before = {l1_ratio:.3f}",
                 "ours: unbiased per entry (the paper); mergekit: L1 norm of the vector kept"])
    probs = keep_probabilities(delta, 0.6, 0.1)
    emp = theirs["della_keep"]
    order = delta.abs().argsort(dim=1)  # within each row, smallest magnitude first
    low, high = emp.gather(1, order[:, :1]).mean(), emp.gather(1, order[:, -1:]).mean()  # 64 rows x 2000 draws each
    rows.append(["DELLA keep probabilities, density 0.6, epsilon 0.1",
                 f"{probs.min():.3f} to {probs.max():.3f}, whole tensor",
                 f"{low:.3f} (smallest of each row) to {high:.3f} (largest), empirical over 2000 draws", "",
                 "ours span epsilon (the paper's window; 0.55-0.65), mergekit density +/- epsilon (0.5-0.7) "
                 "within each row"])
    ours_slerp = slerp([a, b], t=0.3)
    rows.append(["SLERP t 0.3 of 64x256 tensors", "one angle for the tensor", "one angle per row",
                 f"max |difference| {float((ours_slerp - theirs['slerp']).abs().max()):.4f}",
                 "mergekit 0.1.5 interpolates each output row on its own"])
    near = float((slerp([a, a * 1.0001 + 1e-3 * b], t=0.3) - theirs["slerp_near"]).abs().max())
    rows.append(["SLERP nearly colinear (cos 0.99999)", "linear fallback (|cos| > 1 - 1e-4)",
                 "linear fallback (dot > 0.9995)", f"max |difference| {near:.2e}",
                 "both fall back; thresholds differ between cos 0.9995 and 0.9999"])
    text = "\n".join([
        "### Side by side with mergekit (measured)", "",
        f"{stamp} mergekit {version} in its own virtualenv. Command: `python benchmarks/mergekit_compare.py "
        "--mergekit-python /work/venv-mergekit/bin/python`. Same tensors (seeded) through both, mergekit's "
        "functions called directly.", "",
        markdown_table(["primitive", "crossfuse", "mergekit", "comparison", "why"], rows), "",
        "Whole models with N = 2, 4, 8 inputs through both command lines: the next section.",
    ])
    if not args.no_doc:
        write_section("merging.md", "mergekit_compare", text)
    print(text)
    if args.no_scaling:
        return
    shape = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128} \
        if args.tiny else ROBERTA_BASE
    model_gb, rows = scaling(args.mergekit_python, args.workdir, args.sizes, shape)
    text = "\n".join([
        "### Whole models: time and memory against mergekit (measured)", "",
        f"{stamp} mergekit {version}. Command: `python benchmarks/mergekit_compare.py --mergekit-python "
        f"/work/venv-mergekit/bin/python`. Inputs: RoBERTa-base-shaped float32 checkpoints of {model_gb} GB each "
        "(TIES: N fine-tunes plus a base); each merge is one fresh `python merge.py ...` / `mergekit-yaml ...` "
        "process; peak RSS of that process (the interpreter and imports included: see the first line).", "",
        markdown_table(["method", "N", "crossfuse s", "mergekit s", "time ratio", "crossfuse peak GB",
                        "mergekit peak GB", "max abs. difference"], rows),
    ])
    if not args.no_doc:
        write_section("merging.md", "mergekit_scaling", text)
    print(text)


if __name__ == "__main__":
    main()
