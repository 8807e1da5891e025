"""The training loop: one explicit Accelerate loop over a :class:`~engine.tasks.Task`.

``Trainer(cfg)`` builds data, model, task, optimizer and schedule; ``fit()`` trains, evaluates, keeps the best model
and returns the final metrics. What the loop optimises is the task's business (:mod:`engine.tasks`); the run folder
(:mod:`engine.run_folder`), checkpoints (:mod:`engine.checkpoint`), launcher quirks (:mod:`engine.distributed`) and
non-finite losses (:mod:`engine.nonfinite`) each live in their own module, so this one reads top to bottom.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from omegaconf import DictConfig
from tqdm.auto import tqdm

from fusion.registry import get_fusion_class
from models import load_state
from models.folder import load_task_state, read_weights
from models.hub import resolve_pretrained

from .averaging import WeightAverager
from .builders import build_dataset, build_loader, build_tokenizer
from .checkpoint import atomic_dir, load_checkpoint, resolve_resume, save_checkpoint, save_model_folder
from .config import ConfigError, check_resume, to_dict
from .distributed import before_prepare, building_model, compile_model, fused_optimizer_ok, make_accelerator
from .evaluation import evaluate_splits, load_test_split
from .finetune import drop_encoder_grads, set_train_mode
from .init_from import start_model
from .nonfinite import NonFiniteGuard
from .optim import build_optimizer, build_scheduler
from .reporting import StepMeter, log_values, report_init, report_predictions, report_skips, result_scalars
from .run_folder import PREEMPTED_FILE, RunFolder
from .selection import BestModel, check_metric
from .signals import StopSignals
from .tasks import TaskModel, create_task
from .tracking import tracker_config, tracker_init_kwargs

logger = logging.getLogger(__name__)


class Trainer:
    """Holds everything a run needs; ``fit()`` trains, evaluates and writes the run folder."""

    def __init__(self, cfg: DictConfig, resume: str | None = None):
        self.cfg = cfg
        if not cfg.run.name:
            raise ConfigError("set run.name: the run folder under run.output_dir (train.py names unnamed runs)")
        self.run = RunFolder(Path(cfg.run.output_dir) / cfg.run.name)
        self.run.check_can_start(resume, cfg.run.overwrite)
        self.resume, self.resume_from = resume, resolve_resume(self.run.path, resume)
        self.resume_changes = check_resume(self.run.path / "config.yaml", cfg) if self.resume_from else []
        self.task = create_task(cfg.train.task, **to_dict(cfg.train.task_params))
        idle = get_fusion_class(cfg.model.fusion.name).idle_parameters or self.task.find_unused_parameters
        self.accelerator = acc = make_accelerator(cfg, self.run.path, find_unused_parameters=idle)
        self.run.is_main = acc.is_main_process
        set_seed(cfg.run.seed)
        with acc.main_process_first():  # the embedded benchmark is generated once, by the main process
            self.train_set = self.task.train_dataset(cfg) or build_dataset(cfg, cfg.data.train_split,
                                                                           cfg.data.languages)
            self.eval_set = build_dataset(cfg, cfg.data.eval_split, cfg.data.eval_languages) \
                if cfg.data.eval_split else None
            load_test_split(cfg)  # a mistyped data.test_split fails now, not after training
        self.tokenizer = build_tokenizer(cfg, cfg.train.init_from and resolve_pretrained(cfg.train.init_from))
        with building_model(acc):
            self.model, self.init_report = start_model(cfg, self.train_set, self.tokenizer)
        if cfg.train.compile:
            compile_model(self.model)
        self.task.setup(self.model)
        check_metric(cfg.train.best_metric, self.task.metric_names(self.model), cfg.train.task)
        self.task.initialise(self.model)
        self.task.place(acc.device)
        image_cfg = self.model.image_data_config
        self.languages = sorted(set(self.train_set.languages) | set(self.eval_set.languages if self.eval_set else []))
        self.train_loader = build_loader(cfg, self.train_set, self.tokenizer, image_cfg, True, self.languages)
        eval_loader = build_loader(cfg, self.eval_set, self.tokenizer, image_cfg, False, self.languages) \
            if self.eval_set else None
        fused = fused_optimizer_ok(acc)
        self.optimizer = build_optimizer(self.model, cfg.optim.lr, cfg.optim.encoder_lr, cfg.optim.weight_decay,
                                         tuple(cfg.optim.betas), cfg.optim.layer_decay, self.task.extras, fused)
        steps_per_epoch = math.ceil(len(self.train_loader) / max(1, acc.num_processes) / cfg.train.grad_accum)
        self.total_steps = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
        self.epochs = math.ceil(self.total_steps / max(1, steps_per_epoch))
        # Accelerate steps a prepared scheduler once per process for each optimizer step.
        self.scheduler = build_scheduler(self.optimizer, cfg.optim.schedule, self.total_steps * acc.num_processes,
                                         cfg.optim.warmup_ratio)
        before_prepare(acc, self.model)
        prepared = acc.prepare(TaskModel(self.model, self.task), self.optimizer, self.train_loader, self.scheduler,
                               *([eval_loader] if eval_loader else []))
        self.trainable, self.optimizer, self.train_loader, self.scheduler = prepared[:4]
        self.eval_loader = prepared[4] if eval_loader else None
        self.guard = NonFiniteGuard(cfg.train.nonfinite, self.optimizer.optimizer if acc.scaler is None else None,
                                    acc.device)
        self.state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None}
        self.best = BestModel(cfg.train.best_metric, cfg.train.best_mode, self.state)
        wa = cfg.train.weight_averaging  # EMA / SWA of the weights, saved as <run>/model_ema or model_swa
        self.averager = None if wa.name == "none" else \
            WeightAverager(self.model, wa.name, wa.decay, wa.start_step, wa.every)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train, evaluate and write the run folder; returns the final metrics document.

        A SIGTERM or SIGUSR1 makes the loop save a checkpoint at the next step boundary (with several processes:
        the next log step, where they agree) and return ``{"interrupted": "SIGTERM", "steps": k, "checkpoint":
        path}`` instead; ``--resume latest`` continues it.
        """
        self.stop = StopSignals()
        try:
            self.run.claim(self.resume, self.cfg.run.overwrite)  # the folder's one owner until fit returns
            with self.stop:
                return self._fit()
        finally:
            self.run.release()
            if self.cfg.run.tracker != "none":
                self.accelerator.end_training()  # flush W&B / TensorBoard, even after an error

    def _fit(self) -> dict[str, Any]:
        cfg, acc, state = self.cfg, self.accelerator, self.state
        if self.resume_from is not None:  # config.yaml is rewritten only once the checkpoint has loaded
            state.update(load_checkpoint(acc, self.resume_from, self.averager, cfg.train.trust_checkpoint,
                                         cfg.train.allow_inexact_resume))
            logger.info("resumed from %s at step %d%s", self.resume_from, state["step"], "".join(
                f"; {k}: {a!r} -> {b!r}" for k, a, b in self.resume_changes))
        self.run.start(cfg, resumed_at=state["step"] if self.resume_from is not None else None)
        if cfg.run.tracker != "none":
            acc.init_trackers(cfg.run.project, config=tracker_config(cfg),
                              init_kwargs=tracker_init_kwargs(cfg, self.run.path, acc.is_main_process))
        if self.init_report is not None and self.resume_from is None:
            report_init(self.run, self.init_report)
        self._train_mode()
        bar = tqdm(total=self.total_steps, initial=state["step"], desc="train", dynamic_ncols=True,
                   disable=not (acc.is_local_main_process and cfg.run.progress_bar))
        skipped, self.meter = [], StepMeter()
        interrupted = None
        while state["step"] < self.total_steps and state["epoch"] < self.epochs and interrupted is None:
            self.train_loader.set_epoch(state["epoch"])
            loader = acc.skip_first_batches(self.train_loader, state["batch_in_epoch"]) \
                if state["batch_in_epoch"] else self.train_loader
            for batch in self.meter.timed(loader):
                skipped.extend(batch.pop("skipped", []))
                state["batch_in_epoch"] += 1
                out = self._step(batch)
                if state["batch_in_epoch"] == len(self.train_loader):
                    self._end_epoch(evaluate=out is None)  # before this step's checkpoint, so a resume never repeats it
                if out is None or not acc.sync_gradients:
                    continue
                state["step"] += 1
                step = state["step"]
                if self.averager is not None:
                    self.averager.update(self.model, step)
                if step == cfg.train.linear_probe_steps:
                    self._train_mode()  # LP-FT: the probe is over, the towers train from here
                bar.update(1)
                log_step = step % cfg.run.log_every == 0 or step == self.total_steps
                if log_step:
                    bar.set_postfix(loss=f"{self._log(out, step):.4f}")
                if self.eval_loader is not None and (step % cfg.train.eval_every == 0 if cfg.train.eval_every
                                                     else state["batch_in_epoch"] == 0):
                    self._eval_and_keep_best()
                saved = bool(cfg.train.save_every and step % cfg.train.save_every == 0)
                if saved:
                    self._save_checkpoint()
                if step >= self.total_steps:
                    break
                if self._stop_requested(log_step):
                    interrupted = self.run.path / "checkpoints" / f"step_{step:08d}" if saved else \
                        self._save_checkpoint()
                    break
        bar.close()
        if interrupted is not None:
            doc = {"interrupted": self.stop.received or "a signal on another process", "steps": state["step"],
                   "checkpoint": str(interrupted)}
            self.run.write_json(PREEMPTED_FILE, doc)  # the SLURM script requeues on this marker only
            logger.warning("%s received: saved %s at step %d; continue with --resume latest", doc["interrupted"],
                           interrupted, state["step"])
            return doc
        self.guard.check_now()
        if self.eval_loader is not None and state["best_step"] != state["step"]:
            self._eval_and_keep_best()
        if self.eval_loader is None:
            self._save_model(self.run.path / "model")
        report_skips(self.run, acc, skipped, {"train": self.train_set, "val": self.eval_set})
        results = self._final_evaluation()
        if self.averager is not None:
            results["weight_averaging"] = self._finish_averaging()
        return results

    def _step(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        """One forward/backward (an optimizer step when gradients sync); None when a bad batch was skipped on the
        host (``train.nonfinite=skip`` without a fused optimizer)."""
        acc, clip, norm = self.accelerator, self.cfg.optim.clip_grad, None
        with acc.accumulate(self.trainable):
            out = self.trainable(batch)
            if self.guard.checks_on_host and not torch.isfinite(out["loss"].detach()).all():
                logger.warning("non-finite loss at step %d: skipped (train.nonfinite=skip)", self.state["step"] + 1)
                self.optimizer.zero_grad()
                return None
            acc.backward(out["loss"])
            if acc.sync_gradients:
                if self.state["step"] < self.cfg.train.linear_probe_steps:
                    drop_encoder_grads(self.model)  # LP-FT: encoders fixed while probing
                norm = acc.clip_grad_norm_(self.trainable.parameters(), clip if clip > 0 else math.inf)
                if not torch.is_tensor(norm) or acc.scaler is not None:
                    norm = None  # DeepSpeed clips (and measures) inside its step; fp16 overflow is the scaler's
                self.guard.observe(self.state["step"] + 1, out["loss"], norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        self.meter.seen += batch["labels"].shape[0]
        out["grad_norm"] = norm
        return out

    def _log(self, out: dict[str, Any], step: int) -> float:
        values = log_values(out, self.guard, self.meter, self.optimizer, self.accelerator.num_processes)
        self._record(values, step)
        return values["train/loss"]

    def _end_epoch(self, evaluate: bool) -> None:
        """Count the epoch as done; ``evaluate``: run its end-of-epoch evaluation here (the last batch was skipped,
        so the loop will not reach its own evaluation for this step)."""
        self.state["epoch"] += 1
        self.state["batch_in_epoch"] = 0
        if evaluate and self.eval_loader is not None and not self.cfg.train.eval_every:
            self._eval_and_keep_best()

    def _record(self, values: dict[str, Any], step: int) -> None:
        self.run.log(values, step)
        if self.cfg.run.tracker != "none":
            self.accelerator.log(values, step=step)

    def _train_mode(self) -> None:
        set_train_mode(self.model, probing=self.state["step"] < self.cfg.train.linear_probe_steps)

    def _stop_requested(self, log_step: bool) -> bool:
        """Whether a stop signal arrived; with several processes checked at log steps, where all ranks agree (the
        check is a collective, and the loop reads nothing from the device between log steps)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return self.stop.requested
        if not log_step:
            return False
        if self.stop.requested:
            acc.set_trigger()
        return acc.check_trigger()

    # ------------------------------------------------------------------ saving and evaluating
    def _save_checkpoint(self) -> Path:
        self.guard.check_now()
        return save_checkpoint(self.accelerator, self.run.path, self.state, self.cfg.train.keep_last, self.averager)

    def _save_model(self, directory: Path) -> None:
        save_model_folder(self.accelerator, self.trainable, self.model, self.task.extras, self.tokenizer, directory)

    def _eval_and_keep_best(self) -> None:
        self.guard.check_now()
        res = self.task.evaluate(self.accelerator, self.trainable, self.eval_loader, languages=self.languages,
                                 reference_language=(self.cfg.data.languages or [None])[0])
        self._record(result_scalars("val", res), self.state["step"])
        if self.best.update(res["overall"], self.state["step"]):
            self._save_model(self.run.path / "model")
        self._train_mode()

    def _final_evaluation(self) -> dict[str, Any]:
        """Reload the best model and evaluate it on the eval and test splits."""
        cfg, acc = self.cfg, self.accelerator
        model_dir = self.run.path / "model"
        load_state(self.model, read_weights(model_dir), source=str(model_dir))
        if len(self.task.extras):
            load_task_state(self.task.extras, model_dir)
        threshold = self.task.calibrate(acc, self.trainable, self.eval_loader, model_dir)
        loaders = {"val": self.eval_loader} if self.eval_loader else {}
        results = evaluate_splits(cfg, acc, self.task, self.trainable, self.tokenizer, self.languages, loaders,
                                  threshold=threshold)
        doc = {"best_step": self.state["best_step"], "best_metric": cfg.train.best_metric,
               "steps": self.state["step"], "results": results}
        self.run.write_json("metrics.json", doc)
        self._record({k: v for split, r in results.items() for k, v in result_scalars(split, r).items()},
                     self.state["step"])
        if cfg.run.tracker != "none" and any("accuracy" in r["overall"] for r in results.values()):
            report_predictions(acc, cfg, self.trainable, self.eval_loader, self.eval_set, self.tokenizer,
                               self.languages, threshold, self.state["step"])
        return doc

    def _finish_averaging(self) -> dict[str, Any]:
        """Save the EMA/SWA model as ``<run>/model_<name>/`` and evaluate it like the best model."""
        avg, acc = self.averager, self.accelerator
        module = avg.finalise(self.model)
        if acc.is_main_process:
            atomic_dir(self.run.path / avg.folder, lambda tmp: module.save_pretrained(tmp, self.tokenizer))
        acc.wait_for_everyone()
        results = evaluate_splits(self.cfg, acc, self.task, module, self.tokenizer, self.languages,
                                  {"val": self.eval_loader} if self.eval_loader else {})
        doc = {"name": avg.name, "updates": avg.num_updates, "folder": avg.folder, "results": results}
        self.run.write_json(f"metrics_{avg.name}.json", doc)
        return doc
