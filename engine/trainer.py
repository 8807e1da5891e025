"""The training loop: one explicit Accelerate loop over a Task that returns a loss dict."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from omegaconf import DictConfig
from safetensors.torch import load_file
from tqdm.auto import tqdm

from models import MultimodalModel, load_state

from .builders import build_dataset, build_loader, build_model, build_tokenizer
from .checkpoint import STATE_FILE, atomic_dir, prune_checkpoints, resolve_resume, write_json_atomic
from .config import save_config, to_dict
from .evaluation import evaluate, format_table
from .optim import build_optimizer, build_scheduler
from .tasks import create_task
from .tracking import tracker_init_kwargs


class RunExistsError(FileExistsError):
    pass


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


class Trainer:
    """Holds everything a run needs; ``fit()`` trains, evaluates and writes the run folder.

    Run folder: ``config.yaml`` (resolved), ``model/`` (best model, ``save_pretrained`` format), ``checkpoints/``
    (training state for ``--resume``), ``metrics.json``, ``log.jsonl``, ``data_skipped.json`` when rows were skipped.
    """

    def __init__(self, cfg: DictConfig, resume: str | None = None):
        self.cfg = cfg
        self.run_dir = Path(cfg.run.output_dir) / cfg.run.name
        if self.run_dir.exists() and not resume and (self.run_dir / "model").exists() and not cfg.run.overwrite:
            raise RunExistsError(
                f"run folder {self.run_dir} already holds a trained model; pick another run.name, resume it with "
                "--resume latest, or set run.overwrite=true to replace it")
        self.accelerator = Accelerator(
            gradient_accumulation_steps=cfg.train.grad_accum,
            mixed_precision=cfg.train.mixed_precision,
            log_with=None if cfg.run.tracker == "none" else cfg.run.tracker,
            project_dir=str(self.run_dir),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        set_seed(cfg.run.seed)
        acc = self.accelerator
        # Data first: the tiny text encoder's vocabulary and the label set come from it.
        with acc.main_process_first():  # the embedded benchmark is generated once, by the main process
            self.train_set = build_dataset(cfg, cfg.data.train_split, cfg.data.languages)
            self.eval_set = build_dataset(cfg, cfg.data.eval_split, cfg.data.eval_languages) \
                if cfg.data.eval_split else None
        self.tokenizer = build_tokenizer(cfg, cfg.train.init_from and Path(cfg.train.init_from))
        self.model = self._build_model()
        self.task = create_task(cfg.train.task, **to_dict(cfg.train.task_params))
        extra = self.task.setup(self.model)
        image_cfg = self.model.image_data_config
        self.languages = sorted(set(self.train_set.languages) | set(self.eval_set.languages if self.eval_set else []))
        self.train_loader = build_loader(cfg, self.train_set, self.tokenizer, image_cfg, True, self.languages)
        self.eval_loader = build_loader(cfg, self.eval_set, self.tokenizer, image_cfg, False, self.languages) \
            if self.eval_set else None
        modules = [self.model] + ([extra] if extra is not None else [])
        params_model = torch.nn.ModuleList(modules)
        self.optimizer = build_optimizer(params_model, cfg.optim.lr, cfg.optim.encoder_lr, cfg.optim.weight_decay,
                                         tuple(cfg.optim.betas))
        steps_per_epoch = math.ceil(len(self.train_loader) / max(1, acc.num_processes) / cfg.train.grad_accum)
        self.total_steps = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
        self.epochs = math.ceil(self.total_steps / max(1, steps_per_epoch))
        # Accelerate steps a prepared scheduler once per process for each optimizer step.
        self.scheduler = build_scheduler(self.optimizer, cfg.optim.schedule, self.total_steps * acc.num_processes,
                                         cfg.optim.warmup_ratio)
        prepared = acc.prepare(self.model, self.optimizer, self.train_loader, self.scheduler,
                               *([self.eval_loader] if self.eval_loader else []), *([extra] if extra else []))
        self.model, self.optimizer, self.train_loader, self.scheduler = prepared[:4]
        rest = list(prepared[4:])
        self.eval_loader = rest.pop(0) if self.eval_loader else None
        self.extra = rest.pop(0) if extra is not None else None
        if hasattr(self.task, "bind"):
            self.task.bind(self.extra)
        self.state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None}
        self.resume_from = resolve_resume(self.run_dir, resume)

    def _build_model(self) -> MultimodalModel:
        cfg = self.cfg
        num_outputs = len(self.train_set.label_names)
        if cfg.train.init_from:
            from transfer.reuse import init_from_run  # reuse of a trained model for a new task

            return init_from_run(cfg, cfg.train.init_from, num_outputs, self.train_set.label_names,
                                 self.train_set.multi_label, self.tokenizer)
        return build_model(cfg, num_outputs, self.train_set.label_names, self.train_set.multi_label, self.tokenizer)

    # ------------------------------------------------------------------ helpers
    @property
    def unwrapped(self) -> MultimodalModel:
        return self.accelerator.unwrap_model(self.model)

    def log(self, values: dict[str, Any], step: int) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")
        if self.cfg.run.tracker != "none":
            acc.log(values, step=step)

    def save_model(self, directory: Path) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        state = acc.get_state_dict(self.model)  # gathers sharded (ZeRO-3/FSDP) weights on the main process
        if acc.is_main_process:
            def write(tmp: Path) -> None:
                unwrapped = self.unwrapped
                unwrapped.save_pretrained(tmp, self.tokenizer)
                if state is not None:  # weights as gathered, in case the module holds shards
                    from safetensors.torch import save_file
                    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                              str(tmp / "model.safetensors"), metadata={"format": "pt"})
            atomic_dir(directory, write)
        acc.wait_for_everyone()

    def save_checkpoint(self) -> None:
        acc = self.accelerator
        final = self.run_dir / "checkpoints" / f"step_{self.state['step']:08d}"
        tmp = final.with_name(f".tmp-{final.name}")
        acc.save_state(str(tmp))
        if acc.is_main_process:
            write_json_atomic(tmp / STATE_FILE, self.state)
            if final.exists():
                import shutil
                shutil.rmtree(final)
            tmp.rename(final)  # only now does --resume latest see it
            prune_checkpoints(self.run_dir, self.cfg.train.keep_last)
        acc.wait_for_everyone()

    def load_checkpoint(self, path: Path) -> None:
        self.accelerator.load_state(str(path))
        self.state = json.loads((path / STATE_FILE).read_text())
        self.accelerator.print(f"resumed from {path} at step {self.state['step']}")

    def run_eval(self) -> dict[str, Any]:
        ref = self.cfg.data.languages[0] if self.cfg.data.languages else None
        return evaluate(self.accelerator, self.model, self.eval_loader, self.languages,
                        ablation=False, reference_language=ref)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        if cfg.run.tracker != "none":
            acc.init_trackers(cfg.run.project, config=to_dict(cfg),
                              init_kwargs=tracker_init_kwargs(cfg, self.run_dir, acc.is_main_process))
        if self.resume_from is not None:
            self.load_checkpoint(self.resume_from)
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.state["step"], disable=not (
            acc.is_local_main_process and cfg.run.progress_bar), desc="train", dynamic_ncols=True)
        skipped: list[dict] = []
        t0, seen = time.perf_counter(), 0
        done = self.state["step"] >= self.total_steps
        while not done and self.state["epoch"] < self.epochs:
            self.train_loader.set_epoch(self.state["epoch"])
            loader = self.train_loader
            if self.state["batch_in_epoch"]:
                loader = acc.skip_first_batches(self.train_loader, self.state["batch_in_epoch"])
            for batch in loader:
                skipped.extend(batch.pop("skipped", []))
                self.state["batch_in_epoch"] += 1
                with acc.accumulate(self.model):
                    out = self.task(self.model, batch)
                    loss = out["loss"]
                    if not torch.isfinite(loss.detach()):
                        if cfg.train.nonfinite == "skip":
                            self.optimizer.zero_grad()
                            acc.print(f"warning: non-finite loss {loss.item()} at step {self.state['step'] + 1}; "
                                      "step skipped (train.nonfinite=skip)")
                            continue
                        raise FloatingPointError(
                            f"loss is {loss.item()} at step {self.state['step'] + 1} (epoch {self.state['epoch']}); "
                            "lower optim.lr, enable optim.clip_grad, or set train.nonfinite=skip to skip such steps")
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.optim.clip_grad > 0:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad()
                seen += batch["labels"].shape[0]
                if not acc.sync_gradients:
                    continue
                self.state["step"] += 1
                step = self.state["step"]
                bar.update(1)
                if step % cfg.run.log_every == 0 or step == self.total_steps:
                    elapsed = time.perf_counter() - t0
                    values = {"train/loss": loss.item(), "train/samples_per_s": seen * acc.num_processes / elapsed}
                    values.update({f"train/{k}": float(v) for k, v in out.items()
                                   if k not in ("loss", "outputs") and torch.as_tensor(v).numel() == 1})
                    groups = self.optimizer.param_groups
                    values.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(groups)})
                    if torch.cuda.is_available():
                        values["gpu/max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
                    self.log(values, step)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
                    t0, seen = time.perf_counter(), 0
                if self.eval_loader is not None and cfg.train.eval_every and step % cfg.train.eval_every == 0:
                    self._eval_and_keep_best()
                if cfg.train.save_every and step % cfg.train.save_every == 0:
                    self.save_checkpoint()
                if step >= self.total_steps:
                    done = True
                    break
            else:
                self.state["epoch"] += 1
                self.state["batch_in_epoch"] = 0
                if self.eval_loader is not None and not cfg.train.eval_every:
                    self._eval_and_keep_best()
        bar.close()
        if self.eval_loader is not None and (self.state["best_step"] is None or
                                             self.state["best_step"] != self.state["step"]):
            self._eval_and_keep_best()
        if self.eval_loader is None:
            self.save_model(self.run_dir / "model")
        self._write_skips(skipped)
        results = self.final_evaluation()
        if cfg.run.tracker != "none":
            acc.end_training()
        return results

    def _eval_and_keep_best(self) -> None:
        res = self.run_eval()
        metric = res["overall"].get(self.cfg.train.best_metric)
        if metric is None:
            raise KeyError(f"train.best_metric={self.cfg.train.best_metric!r} is not among the metrics "
                           f"{sorted(res['overall'])}")
        step = self.state["step"]
        self.log({f"val/{k}": v for k, v in res["overall"].items()}, step)
        if _better(metric, self.state["best"], self.cfg.train.best_mode):
            self.state.update(best=metric, best_step=step)
            self.save_model(self.run_dir / "model")
        self.model.train()

    def _write_skips(self, skipped: list[dict]) -> None:
        gathered = skipped
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object
            gathered = gather_object(skipped)
        if self.accelerator.is_main_process and gathered:
            counts: dict[str, int] = {}
            for row in gathered:
                counts[row["reason"]] = counts.get(row["reason"], 0) + 1
            write_json_atomic(self.run_dir / "data_skipped.json", {"counts": counts, "rows": gathered})
            self.accelerator.print(f"skipped {len(gathered)} training rows: {counts} "
                                   f"(details in {self.run_dir / 'data_skipped.json'})")

    def final_evaluation(self) -> dict[str, Any]:
        """Reload the best model and evaluate it on the eval and test splits, with ablations."""
        cfg, acc = self.cfg, self.accelerator
        best = load_file(str(self.run_dir / "model" / "model.safetensors"))
        load_state(self.unwrapped, best, source=str(self.run_dir / "model"))
        results = evaluate_splits(cfg, acc, self.model, self.tokenizer, self.languages,
                                  {"val": self.eval_loader} if self.eval_loader else {})
        results_doc = {"best_step": self.state["best_step"], "best_metric": cfg.train.best_metric,
                       "steps": self.state["step"], "results": results}
        if acc.is_main_process:
            write_json_atomic(self.run_dir / "metrics.json", results_doc)
            print(format_table(results))
        self.log({f"{split}/{k}": v for split, r in results.items() for k, v in r["overall"].items()},
                 self.state["step"])
        return results_doc


def evaluate_splits(cfg: DictConfig, acc: Accelerator, model, tokenizer, languages: list[str],
                    loaders: dict[str, Any]) -> dict[str, Any]:
    """Evaluate on the given prepared loaders plus the configured test split (if it exists)."""
    results = {}
    ref = cfg.data.languages[0] if cfg.data.languages else None
    if cfg.data.test_split and "test" not in loaders:
        try:
            test_set = build_dataset(cfg, cfg.data.test_split, cfg.data.eval_languages)
        except FileNotFoundError:
            test_set = None
        if test_set is not None and _has_labels(test_set):
            unwrapped = acc.unwrap_model(model)
            loader = build_loader(cfg, test_set, tokenizer, unwrapped.image_data_config, False, languages)
            loaders = {**loaders, "test": acc.prepare(loader)}
    for split, loader in loaders.items():
        results[split] = evaluate(acc, model, loader, languages, ablation=cfg.eval.modality_ablation,
                                  reference_language=ref)
    return results


def _has_labels(dataset) -> bool:
    return all(r.get("label") is not None for r in dataset.records[:100])
