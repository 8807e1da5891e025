"""The pre-emption matrix and the evaluation memory check; writes the ``preemption`` section of
docs/distributed.md.

``python benchmarks/preemption.py [--skip-memory] [--skip-matrix]``  (~15 min on 2 CPU cores)

Matrix: a tiny run (the test suite's configuration, 60 steps, a checkpoint every 20) is started as one process
(``python train.py``) or two (``accelerate launch --config_file configs/accelerate/cpu_2proc.yaml``), with
``data.num_workers`` 0 or 2, and SIGTERM is sent once it has logged 5 steps: to the whole process group (what
SLURM does for one process), to the launcher alone, to one rank alone, or (``slurm``) to every process with the
launcher ignoring SIGTERM, as ``scripts/slurm/*.sbatch`` start it. Reported: the exit status, whether a complete
checkpoint and the ``preempted.json`` marker were written, and whether ``--resume latest`` then ends with exactly
the weights of the same run left uninterrupted.

Memory: peak RSS of ``evaluate.py`` (one process, modality ablations on) on a validation split of 2,000 and of
60,000 rows of the embedded benchmark; flat means within 10%.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _doc import machine_line, markdown_table, write_section
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
TINY = ["data.params={n_train: 48, n_val: 16, n_test: 16, image_size: 32}", "data.image_size=32",
        "model.text.tiny={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}",
        "model.vision.kwargs={img_size: 32, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}",
        "model.fusion.dim=32", "train.batch_size=8", "eval.batch_size=32", "run.progress_bar=false",
        "run.log_every=1", "train.max_steps=60", "train.save_every=20", "eval.modality_ablation=false",
        "data.test_split=null", "model.fusion.name=image_only", "model.fusion.dropout=0", "model.head.dropout=0"]


def command(processes: int, out: Path, name: str, workers: int, data: Path) -> list[str]:
    args = [*TINY, f"data.root={data}", f"run.output_dir={out}", f"run.name={name}", f"data.num_workers={workers}"]
    if processes == 1:
        return [sys.executable, str(ROOT / "train.py"), *args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu_2proc.yaml",
            "--main_process_port", str(29600 + workers + 7 * (hash(name) % 50)), str(ROOT / "train.py"), *args]


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def ranks(launcher: int) -> list[int]:
    """The training processes under a launcher: the outermost python processes running train.py below it. Their
    own children (DataLoader workers, forked with the same command line) are not ranks: they ignore SIGTERM."""
    out, todo = [], children(launcher)
    while todo:
        pid = todo.pop()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if Path(f"/proc/{pid}").exists() else []
        if any(part.endswith(b"train.py") for part in cmdline):
            out.append(pid)
        else:
            todo += children(pid)
    return sorted(out)


def descendants(pid: int) -> list[int]:
    todo, found = [pid], []
    while todo:
        found.append(todo.pop())
        todo += children(found[-1])
    return found


def interrupted_case(processes: int, workers: int, target: str, out: Path, data: Path) -> dict:
    name = f"p{processes}w{workers}{target}"
    cmd = command(processes, out, name, workers, data)
    if target == "slurm":  # as scripts/slurm/*.sbatch start it: the launcher ignores TERM, its workers handle it
        cmd = ["bash", "-c", "trap '' TERM; exec " + " ".join(f"'{c}'" for c in cmd)]
    env = {**ENV, "PET_SIGNALS_TO_HANDLE": "SIGINT,SIGHUP,SIGQUIT"} if target == "slurm" else ENV
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log, deadline = out / name / "log.jsonl", time.time() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 5):
        if proc.poll() is not None or time.time() > deadline:
            return {"case": name, "status": "did not start", "detail": proc.communicate()[0][-500:]}
        time.sleep(0.05)
    if target == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    elif target == "slurm":  # slurmstepd signals every process of the step (torch elastic's workers have their own
        for pid in descendants(proc.pid):  # sessions, so a process-group signal would not reach them)
            os.kill(pid, signal.SIGTERM)
    elif target == "launcher":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.kill(ranks(proc.pid)[-1], signal.SIGTERM)
    try:
        proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return {"case": name, "status": "hung"}
    run = out / name
    checkpoints = sorted((run / "checkpoints").glob("step_*")) if (run / "checkpoints").is_dir() else []
    complete = bool(checkpoints) and (checkpoints[-1] / "trainer_state.json").is_file()
    marker = (run / "preempted.json").is_file()
    exact = "-"
    if complete:
        resumed = subprocess.run(command(processes, out, name, workers, data) + ["--resume", "latest"], cwd=ROOT,
                                 env=ENV, capture_output=True, text=True, timeout=900)
        if resumed.returncode == 0:
            a = load_file(str(run / "checkpoints" / "step_00000060" / "model.safetensors"))
            b = load_file(str(out / f"ref_p{processes}w{workers}" / "checkpoints" / "step_00000060" /
                              "model.safetensors"))
            exact = "yes" if a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a) else "no"
        else:
            exact = f"resume failed ({resumed.returncode})"
    return {"case": name, "processes": processes, "workers": workers, "target": target, "exit": proc.returncode,
            "checkpoint": f"step {checkpoints[-1].name[5:].lstrip('0')}" if complete else "none",
            "marker": "yes" if marker else "no", "exact": exact}


def matrix(out: Path) -> list[dict]:
    data = out / "data"
    rows = []
    for processes in (1, 2):
        for workers in (0, 2):
            ref = subprocess.run(command(processes, out, f"ref_p{processes}w{workers}", workers, data), cwd=ROOT,
                                 env=ENV, capture_output=True, text=True, timeout=900)
            if ref.returncode != 0:
                sys.exit(f"reference run failed:\n{ref.stdout[-2000:]}{ref.stderr[-2000:]}")
            for target in (("group", "launcher", "rank", "slurm") if processes == 2 else ("group", "launcher")):
                row = interrupted_case(processes, workers, target, out, data)
                print(row, flush=True)
                rows.append(row)
    return rows


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of a child process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"), *cmd], cwd=ROOT, env=ENV,
        capture_output=True, text=True, check=True)
    return int(proc.stdout.split()[-1]) / 1024, time.perf_counter() - start


def memory(out: Path) -> list[list]:
    subprocess.run(command(1, out, "mem", 0, out / "mem_data") + ["train.max_steps=1", "train.save_every=0"],
                   cwd=ROOT, env=ENV, check=True, capture_output=True)
    rows = []
    for examples in (400, 12000):  # x 5 languages: 2,000 and 60,000 rows
        root = out / f"val{examples}"
        params = f"data.params={{n_train: 16, n_val: {examples}, n_test: 16, image_size: 32}}"
        rss, wall = peak_rss_mb([sys.executable, str(ROOT / "evaluate.py"), str(out / "mem"), f"data.root={root}",
                                 params, "eval.modality_ablation=true", "--out", str(out / f"e{examples}.json")])
        rows.append([f"{examples * 5:,}", f"{rss:.0f}", f"{wall:.0f}"])
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cases = [] if args.skip_matrix else matrix(out)
        mem = [] if args.skip_memory else memory(out)
        shutil.rmtree(out, ignore_errors=True)
    parts = ["## Pre-emption matrix and evaluation memory (`benchmarks/preemption.py`)", ""]
    if cases:
        parts += [
            "A tiny run (60 steps, a checkpoint every 20) sent SIGTERM once it had logged 5 steps. *slurm*: every "
            "process of the launch, the launcher ignoring SIGTERM (`trap '' TERM`, `PET_SIGNALS_TO_HANDLE` without "
            "it), which is how the SLURM scripts start it; torch elastic's agent (under `accelerate launch` and "
            "`torchrun`) otherwise re-raises a SIGTERM it receives and exits 1 after its workers have saved and "
            "exited 0. *Exact*: `--resume latest` then ends with the weights of the same run left uninterrupted, "
            "bit for bit.", "",
            markdown_table(["processes", "loader workers", "SIGTERM to", "exit status", "checkpoint", "marker",
                            "resume exact"],
                           [[c.get("processes", "?"), c.get("workers", "?"), c.get("target", c["case"]),
                             c.get("exit", c.get("status")), c.get("checkpoint", "-"), c.get("marker", "-"),
                             c.get("exact", "-")] for c in cases]), ""]
    if mem:
        parts += ["Peak resident memory of `evaluate.py` (one process, ablations on: three passes over the split):",
                  "", markdown_table(["validation rows", "peak RSS MB", "wall s"], mem), ""]
    minutes = (time.perf_counter() - t0) / 60
    parts.append(f"Command: `python benchmarks/preemption.py` ({minutes:.0f} min here). " + machine_line())
    text = "\n".join(parts)
    print(text)
    write_section("distributed.md", "preemption", text)


if __name__ == "__main__":
    main()
