"""Training throughput of our Accelerate loop against a plain hand-written PyTorch loop, data wait, eval speed.

Both loops train the same model (same initial weights), on the same data, batch, optimizer and schedule, in the
same process, alternating ``--repeats`` times; the median samples/s of each is compared. Our loop's figure is the
``train/samples_per_s`` it logs itself over all steps (data loading included), the plain loop's is timed the same
way. Also reported: the share of our step spent waiting for the data loader (``train/data_wait_frac``) at the
default worker count, and evaluation throughput.

    OMP_NUM_THREADS=1 python benchmarks/loop_overhead.py            # ~5 min on 2 CPU cores
    python benchmarks/loop_overhead.py --steps 60 --repeats 5       # tighter figures

Writes the ``loop_overhead`` section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from _doc import machine_line, markdown_table, write_section  # noqa: E402

from engine.config import load_config  # noqa: E402
from engine.evaluation import predict  # noqa: E402
from engine.optim import build_optimizer, build_scheduler  # noqa: E402
from engine.trainer import Trainer  # noqa: E402


def overrides(out: Path, data_root: Path, steps: int, batch: int, name: str) -> list[str]:
    """A small but not trivial model: 2-layer BERT (128 hidden), 4-block ViT at 64 px, concat fusion.

    Evaluation only after the last step (``eval_every`` beyond the run), outside the timed steps.
    """
    return [
        f"data.root={data_root}", "data.params={n_train: 512, n_val: 64, n_test: 16, image_size: 64}",
        "data.image_size=64", "data.test_split=null",
        "model.vision.kwargs={img_size: 64, patch_size: 16, embed_dim: 192, depth: 4, num_heads: 3}",
        f"train.batch_size={batch}", f"train.max_steps={steps}", "train.eval_every=1000000000", "train.save_every=0",
        f"run.log_every={steps}", "run.progress_bar=false", f"run.output_dir={out}", f"run.name={name}",
        "run.overwrite=true", "eval.batch_size=64", "eval.modality_ablation=false",
    ]


def plain_loop(trainer: Trainer, init: dict, steps: int) -> float:
    """The loop anyone would write by hand: samples/s over ``steps`` steps, data loading included."""
    model = copy.deepcopy(trainer.model)
    model.load_state_dict(init)
    model.train()
    cfg = trainer.cfg
    # The same optimizer as the trainer's (fused AdamW), so the comparison measures the loop alone.
    opt = build_optimizer(model, cfg.optim.lr, cfg.optim.encoder_lr, cfg.optim.weight_decay, tuple(cfg.optim.betas),
                          fused=True)
    sched = build_scheduler(opt, cfg.optim.schedule, steps, cfg.optim.warmup_ratio)
    loader = trainer.train_loader.base_dataloader if hasattr(trainer.train_loader, "base_dataloader") \
        else trainer.train_loader
    seen, step, start = 0, 0, time.perf_counter()
    while step < steps:
        for batch in loader:
            batch.pop("skipped", None)
            loss = trainer.task(model, batch)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            opt.step()
            sched.step()
            opt.zero_grad()
            seen += batch["labels"].shape[0]
            step += 1
            if step == steps:
                break
    return seen / (time.perf_counter() - start)


def our_loop(trainer: Trainer, init: dict) -> tuple[float, float]:
    """Run ``Trainer.fit`` from ``init``; returns its own logged samples/s and data-wait share."""
    trainer.model.load_state_dict(init)
    trainer.state.update(step=0, epoch=0, batch_in_epoch=0, best=None, best_step=None)
    log = trainer.run.path / "log.jsonl"
    log.unlink(missing_ok=True)
    trainer.fit()
    row = next(json.loads(line) for line in log.read_text().splitlines() if "train/samples_per_s" in line)
    return row["train/samples_per_s"], row["train/data_wait_frac"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=None, help="data.num_workers (default: the config's)")
    parser.add_argument("--cache-images", action="store_true",
                        help="data.cache_images=true: after the first epoch, images come from memory")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extra = [] if args.num_workers is None else [f"data.num_workers={args.num_workers}"]
        extra += ["data.cache_images=true"] if args.cache_images else []
        cfg = load_config(None, overrides(tmp, tmp / "data", args.steps, args.batch, "bench") + extra)
        trainer = Trainer(cfg)
        init = copy.deepcopy(trainer.model.state_dict())
        # Warm-up: allocator, first touch of the data, thread pools; with the image cache, one whole epoch, so that
        # every timed run (plain or ours) reads images from memory rather than the first one filling the cache.
        plain_loop(trainer, init, len(trainer.train_loader) if args.cache_images else 3)
        plain, ours, waits = [], [], []
        for _ in range(args.repeats):
            plain.append(plain_loop(trainer, init, args.steps))
            sps, wait = our_loop(trainer, init)
            ours.append(sps)
            waits.append(wait)
        model = trainer.model
        predict(trainer.accelerator, model, trainer.eval_loader)  # warm-up
        start = time.perf_counter()
        n = len(predict(trainer.accelerator, model, trainer.eval_loader)["labels"])
        eval_sps = n / (time.perf_counter() - start)
    p, o = statistics.median(plain), statistics.median(ours)
    overhead = (p - o) / p * 100
    threads = os.environ.get("OMP_NUM_THREADS", "(unset)")
    flag = ("" if args.num_workers is None else f" --num-workers {args.num_workers}") + \
        (" --cache-images" if args.cache_images else "")
    rows = [["plain PyTorch loop", f"{p:.1f}", "1.000", "-"],
            ["crossfuse Trainer.fit", f"{o:.1f}", f"{o / p:.3f}", f"{statistics.median(waits) * 100:.1f}%"]]
    text = "\n".join([
        f"## Training loop overhead (`benchmarks/loop_overhead.py{flag}`)",
        "",
        f"Same model (BERT 2x128 + ViT 4x192 at 64 px, concat fusion), data, batch {args.batch}, AdamW, clipping and "
        f"schedule; {args.steps} steps per run, median of {args.repeats} alternating runs, data loading included, "
        f"`data.num_workers={cfg.data.num_workers}`, `data.cache_images={str(cfg.data.cache_images).lower()}` (the "
        "trainer and its loaders are built once and reused by the runs, so with the cache only the first pass over "
        f"the 512 training images reads files). Command: `OMP_NUM_THREADS={threads} python "
        f"benchmarks/loop_overhead.py --steps {args.steps} --batch {args.batch} --repeats {args.repeats}{flag}`. "
        f"Load average during the run: {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at the end (other work "
        "on the same cores makes single runs vary; the loops alternate so both see the same conditions).",
        "",
        markdown_table(["loop", "samples/s", "ratio", "step time waiting for data"], rows),
        "",
        f"Overhead of our loop: **{overhead:.1f}%** (target: at most 3%; negative = faster than the plain loop). "
        f"Runs: plain {', '.join(f'{x:.1f}' for x in plain)}; ours {', '.join(f'{x:.1f}' for x in ours)} samples/s.",
        "",
        f"Evaluation throughput (forward only, batch 64, gathered predictions): **{eval_sps:.1f} samples/s**.",
        "",
        machine_line(),
    ])
    section = ("loop_overhead" if args.num_workers is None else f"loop_overhead_workers{args.num_workers}") + \
        ("_cached" if args.cache_images else "")
    path = write_section("performance.md", section, text, title="Performance")
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
