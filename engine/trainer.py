"""The training loop: one explicit Accelerate loop over a Task that returns a loss dict."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, set_seed
from omegaconf import DictConfig
from safetensors.torch import load_file
from tqdm.auto import tqdm

from models import MultimodalModel, load_state, resolve_model_dir

from .averaging import WeightAverager
from .builders import build_dataset, build_loader, build_model, build_tokenizer
from .checkpoint import (
    STATE_FILE,
    StopSignals,
    atomic_dir,
    load_task_state,
    prune_checkpoints,
    resolve_resume,
    save_task_state,
    truncate_log,
    write_json_atomic,
)
from .config import save_config, to_dict
from .distributed import multi_process_cpu
from .evaluation import evaluate, evaluate_splits, format_table, tune_and_save_thresholds
from .finetune import drop_encoder_grads
from .init_from import init_from_run
from .optim import build_optimizer, build_scheduler
from .tasks import create_task
from .tracking import tracker_config, tracker_init_kwargs


class RunExistsError(FileExistsError):
    """The run folder already holds a trained model and neither --resume nor run.overwrite was given."""


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
            cpu=multi_process_cpu(),  # several CPU processes: DDP over gloo
            # Fusion methods leave parameters unused in some steps (missing-modality tokens, unimodal
            # baselines' idle tower): DDP must not wait for their gradients.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        set_seed(cfg.run.seed)
        acc = self.accelerator
        ds_plugin = acc.state.deepspeed_plugin
        if ds_plugin is not None and ds_plugin.deepspeed_config.get("gradient_clipping") == "auto":
            # DeepSpeed clips inside its own step (our clip_grad_norm_ call is then a no-op): give it optim.clip_grad
            ds_plugin.deepspeed_config["gradient_clipping"] = cfg.optim.clip_grad
        # Data first: the tiny text encoder's vocabulary and the label set come from it.
        with acc.main_process_first():  # the embedded benchmark is generated once, by the main process
            self.train_set = build_dataset(cfg, cfg.data.train_split, cfg.data.languages)
            self.eval_set = build_dataset(cfg, cfg.data.eval_split, cfg.data.eval_languages) \
                if cfg.data.eval_split else None
        self.tokenizer = build_tokenizer(cfg, cfg.train.init_from and resolve_model_dir(cfg.train.init_from))
        zero3 = ds_plugin is not None and ds_plugin.zero_stage == 3
        if zero3:
            # With ZeRO-3 announced, transformers builds the text tower alone under deepspeed.zero.Init (partitioned,
            # already bf16) while timm builds the rest as usual: ZeRO-3 then refuses a model of two dtypes. Built
            # whole (on the CPU), DeepSpeed casts and partitions all of it in prepare().
            from transformers.integrations import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
            try:
                self.model = self._build_model()
            finally:
                ds_plugin.set_deepspeed_weakref()
        else:
            self.model = self._build_model()
        if cfg.train.compile:  # in place, so state-dict keys and unwrap_model stay as without compile
            vision = self.model.vision
            if vision is not None and vision.channels_last:
                # Inductor's convolution_backward meta kernel predicts NCHW weight gradients where CUDA returns
                # channels-last ones, and the compiled step fails (pytorch/pytorch#171622; seen with torch 2.11
                # on an H100). Inductor picks convolution layouts itself, so the switch is not needed there.
                acc.print("warning: model.vision.channels_last is turned off under train.compile "
                          "(pytorch/pytorch#171622); torch.compile chooses the convolution memory format itself")
                vision.set_channels_last(False)
            self.model.compile()
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
                                         tuple(cfg.optim.betas), cfg.optim.layer_decay)
        steps_per_epoch = math.ceil(len(self.train_loader) / max(1, acc.num_processes) / cfg.train.grad_accum)
        self.total_steps = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
        self.epochs = math.ceil(self.total_steps / max(1, steps_per_epoch))
        # Accelerate steps a prepared scheduler once per process for each optimizer step.
        self.scheduler = build_scheduler(self.optimizer, cfg.optim.schedule, self.total_steps * acc.num_processes,
                                         cfg.optim.warmup_ratio)
        if zero3:
            from deepspeed.runtime.zero import register_external_parameter

            for module, param in self.model.external_parameters():
                register_external_parameter(module, param)
        prepared = acc.prepare(self.model, self.optimizer, self.train_loader, self.scheduler,
                               *([self.eval_loader] if self.eval_loader else []), *([extra] if extra else []))
        self.model, self.optimizer, self.train_loader, self.scheduler = prepared[:4]
        rest = list(prepared[4:])
        self.eval_loader = rest.pop(0) if self.eval_loader else None
        self.extra = rest.pop(0) if extra is not None else None
        if hasattr(self.task, "bind"):
            self.task.bind(self.extra)
        if hasattr(self.task, "on_prepared"):  # e.g. move a frozen teacher to the accelerator's device
            self.task.on_prepared(acc)
        self.state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None}
        self.resume_from = resolve_resume(self.run_dir, resume)
        wa = cfg.train.weight_averaging  # EMA / SWA of the weights, saved as <run>/model_ema or model_swa
        self.averager = None if wa.name == "none" else \
            WeightAverager(self.unwrapped, wa.name, wa.decay, wa.start_step, wa.every)
        if self.averager is not None:
            acc.register_for_checkpointing(self.averager)  # --resume continues the same average

    def _build_model(self) -> MultimodalModel:
        cfg = self.cfg
        num_outputs = len(self.train_set.label_names)
        if cfg.train.init_from:
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
                unwrapped.save_pretrained(tmp, self.tokenizer, state_dict=state)
                if self.extra is not None:  # the task's own trainable module (e.g. alignment projections)
                    save_task_state(self.accelerator.unwrap_model(self.extra), tmp)
            atomic_dir(directory, write)
        acc.wait_for_everyone()

    def save_checkpoint(self) -> Path:
        """Write the full training state (weights, optimizer, scheduler, RNGs, sampler, loop position).

        Written under ``.tmp-step_N`` and renamed once complete, so a crash mid-save never leaves a folder that
        ``--resume latest`` would pick (it only considers ``step_*`` folders holding ``trainer_state.json``).
        """
        acc = self.accelerator
        final = self.run_dir / "checkpoints" / f"step_{self.state['step']:08d}"
        tmp = final.with_name(f".tmp-{final.name}")
        acc.save_state(str(tmp))
        acc.wait_for_everyone()  # sharded states (ZeRO, FSDP) are written by every rank before the rename
        if acc.is_main_process:
            write_json_atomic(tmp / STATE_FILE, self.state)
            if final.exists():
                import shutil
                shutil.rmtree(final)
            tmp.rename(final)  # only now does --resume latest see it
            prune_checkpoints(self.run_dir, self.cfg.train.keep_last)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        self.accelerator.load_state(str(path))
        self.state = json.loads((path / STATE_FILE).read_text())
        if self.accelerator.is_main_process:
            truncate_log(self.run_dir / "log.jsonl", self.state["step"])
        self.accelerator.print(f"resumed from {path} at step {self.state['step']}")

    def run_eval(self) -> dict[str, Any]:
        if hasattr(self.task, "evaluate"):  # tasks without class labels (e.g. contrastive) bring their metrics
            return {"overall": self.task.evaluate(self.accelerator, self.model, self.eval_loader)}
        ref = self.cfg.data.languages[0] if self.cfg.data.languages else None
        return evaluate(self.accelerator, self.model, self.eval_loader, self.languages,
                        ablation=False, reference_language=ref)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train, evaluate and write the run folder; returns the final metrics document.

        A SIGTERM or SIGUSR1 makes the loop save a checkpoint at the next step boundary and return
        ``{"interrupted": "SIGTERM", "steps": k, "checkpoint": path}`` instead; ``--resume latest`` continues it.
        """
        self.stop_signals = StopSignals()
        try:
            with self.stop_signals:
                return self._fit()
        finally:
            if self.cfg.run.tracker != "none":
                self.accelerator.end_training()  # flush W&B / TensorBoard, even after an error

    def _stop_requested(self) -> bool:
        """Whether any process received a stop signal (all ranks must leave the loop at the same step)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return self.stop_signals.requested
        if self.stop_signals.requested:
            acc.set_trigger()
        return acc.check_trigger()

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every process (so all ranks skip or stop together, never deadlock)."""
        finite = torch.isfinite(loss.detach()).to(torch.float32)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.reduce(finite, reduction="mean")
        return bool(finite.item() == 1.0)

    def _fit(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            if self.resume_from is None:  # a fresh start (or run.overwrite): the log restarts at step 1
                (self.run_dir / "log.jsonl").unlink(missing_ok=True)
        if cfg.run.tracker != "none":
            acc.init_trackers(cfg.run.project, config=tracker_config(cfg),
                              init_kwargs=tracker_init_kwargs(cfg, self.run_dir, acc.is_main_process))
        if self.resume_from is not None:
            self.load_checkpoint(self.resume_from)
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.state["step"], disable=not (
            acc.is_local_main_process and cfg.run.progress_bar), desc="train", dynamic_ncols=True)
        skipped: list[dict] = []
        t0, seen, wait = time.perf_counter(), 0, [0.0]
        done, interrupted = self.state["step"] >= self.total_steps, None
        while not done and self.state["epoch"] < self.epochs:
            self.train_loader.set_epoch(self.state["epoch"])
            loader = self.train_loader
            if self.state["batch_in_epoch"]:
                loader = acc.skip_first_batches(self.train_loader, self.state["batch_in_epoch"])
            for batch in _timed(loader, wait):
                skipped.extend(batch.pop("skipped", []))
                self.state["batch_in_epoch"] += 1
                with acc.accumulate(self.model):
                    out = self.task(self.model, batch)
                    loss = out["loss"]
                    if not self._all_finite(loss):
                        if cfg.train.nonfinite == "skip":
                            self.optimizer.zero_grad()
                            acc.print(f"warning: non-finite loss {loss.item()} at step {self.state['step'] + 1}; "
                                      "step skipped (train.nonfinite=skip)")
                            continue
                        raise FloatingPointError(
                            f"loss is {loss.item()} at step {self.state['step'] + 1} (epoch {self.state['epoch']}); "
                            "lower optim.lr, enable optim.clip_grad, or set train.nonfinite=skip to skip such steps")
                    acc.backward(loss)
                    if self.state["step"] < cfg.train.linear_probe_steps:  # LP-FT: encoders fixed while probing
                        drop_encoder_grads(self.model)
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
                if self.averager is not None:
                    self.averager.update(self.unwrapped, step)
                bar.update(1)
                if step % cfg.run.log_every == 0 or step == self.total_steps:
                    elapsed = time.perf_counter() - t0
                    values = {"train/loss": loss.item(), "train/samples_per_s": seen * acc.num_processes / elapsed,
                              "train/data_wait_frac": wait[0] / elapsed}
                    values.update({f"train/{k}": float(v) for k, v in out.items()
                                   if k not in ("loss", "outputs") and torch.as_tensor(v).numel() == 1})
                    groups = self.optimizer.param_groups
                    values.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(groups)})
                    if torch.cuda.is_available():
                        values["gpu/max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
                    self.log(values, step)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
                    t0, seen, wait[0] = time.perf_counter(), 0, 0.0
                if self.eval_loader is not None and cfg.train.eval_every and step % cfg.train.eval_every == 0:
                    self._eval_and_keep_best()
                saved = bool(cfg.train.save_every and step % cfg.train.save_every == 0)
                if saved:
                    self.save_checkpoint()
                if step >= self.total_steps:
                    done = True
                    break
                if self._stop_requested():
                    interrupted = (self.save_checkpoint() if not saved else
                                   self.run_dir / "checkpoints" / f"step_{step:08d}")
                    done = True
                    break
            else:
                self.state["epoch"] += 1
                self.state["batch_in_epoch"] = 0
                if self.eval_loader is not None and not cfg.train.eval_every:
                    self._eval_and_keep_best()
        bar.close()
        if interrupted is not None:
            signal_name = self.stop_signals.received or "a signal on another process"
            acc.print(f"{signal_name} received: saved {interrupted} at step {self.state['step']}; "
                      "continue with --resume latest")
            return {"interrupted": signal_name, "steps": self.state["step"], "checkpoint": str(interrupted)}
        if self.eval_loader is not None and (self.state["best_step"] is None or
                                             self.state["best_step"] != self.state["step"]):
            self._eval_and_keep_best()
        if self.eval_loader is None:
            self.save_model(self.run_dir / "model")
        self._write_skips(skipped)
        results = self.final_evaluation()
        if self.averager is not None:
            results["weight_averaging"] = self.finish_averaging()
        return results

    def finish_averaging(self) -> dict[str, Any]:
        """Save the EMA/SWA model as ``<run>/model_<name>/`` and evaluate it like the best model."""
        avg, acc = self.averager, self.accelerator
        if acc.is_main_process:
            atomic_dir(self.run_dir / avg.folder, lambda tmp: avg.module.save_pretrained(tmp, self.tokenizer))
        acc.wait_for_everyone()
        results = evaluate_splits(self.cfg, acc, avg.module, self.tokenizer, self.languages,
                                  {"val": self.eval_loader} if self.eval_loader else {})
        doc = {"name": avg.name, "updates": avg.num_updates, "folder": avg.folder, "results": results}
        if acc.is_main_process:
            write_json_atomic(self.run_dir / f"metrics_{avg.name}.json", doc)
            print(f"{avg.name} model ({avg.num_updates} updates):\n{format_table(results)}")
        return doc

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
        # Rows dropped while reading (data.on_error=skip): every process read the same files, so counted once.
        read = [dict(row, split=split) for split, ds in (("train", self.train_set), ("val", self.eval_set))
                if ds is not None for row in getattr(ds, "skipped", [])]
        # A bad row fails again in every epoch: count each (file, line, reason) once.
        gathered = list({(r["file"], r["line"], r["reason"]): r for r in read + list(gathered)}.values())
        if self.accelerator.is_main_process and gathered:
            counts: dict[str, int] = {}
            for row in gathered:
                counts[row["reason"]] = counts.get(row["reason"], 0) + 1
            write_json_atomic(self.run_dir / "data_skipped.json", {"counts": counts, "rows": gathered})
            self.accelerator.print(f"skipped {len(gathered)} rows: {counts} "
                                   f"(details in {self.run_dir / 'data_skipped.json'})")

    def final_evaluation(self) -> dict[str, Any]:
        """Reload the best model and evaluate it on the eval and test splits, with ablations."""
        cfg, acc = self.cfg, self.accelerator
        best = load_file(str(self.run_dir / "model" / "model.safetensors"))
        load_state(self.unwrapped, best, source=str(self.run_dir / "model"))
        if hasattr(self.task, "evaluate"):
            if self.extra is not None:
                load_task_state(acc.unwrap_model(self.extra), self.run_dir / "model")
            results = {"val": self.run_eval()} if self.eval_loader else {}
        else:
            threshold = tune_and_save_thresholds(acc, self.model, self.eval_loader, self.run_dir / "model")
            results = evaluate_splits(cfg, acc, self.model, self.tokenizer, self.languages,
                                      {"val": self.eval_loader} if self.eval_loader else {}, threshold=threshold)
        results_doc = {"best_step": self.state["best_step"], "best_metric": cfg.train.best_metric,
                       "steps": self.state["step"], "results": results}
        if acc.is_main_process:
            write_json_atomic(self.run_dir / "metrics.json", results_doc)
            print(json.dumps(results, indent=1) if hasattr(self.task, "evaluate") else format_table(results))
        self.log({f"{split}/{k}": v for split, r in results.items() for k, v in r["overall"].items()},
                 self.state["step"])
        return results_doc


def _timed(loader, wait: list[float]):
    """Iterate ``loader``, adding the seconds spent waiting for each batch to ``wait[0]``."""
    it = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        wait[0] += time.perf_counter() - start
        yield batch
