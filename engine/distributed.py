"""Where the loop runs, and the quirks of each place: several CPU processes, DeepSpeed and ZeRO-3, FSDP, compile.

The trainer asks this module once for an ``Accelerator`` and, around building the model, for the few things that
differ per launcher; the loop itself does not branch on the launcher.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs
from omegaconf import DictConfig
from torch import nn


def multi_process_cpu() -> bool:
    """True in a process launched as one of several (``WORLD_SIZE`` > 1) on a machine without a GPU.

    Accelerate picks DDP over gloo (MULTI_CPU) only when told ``cpu=True``; otherwise each launched process
    silently trains alone. Pass this as ``Accelerator(cpu=...)``.
    """
    has_device = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_device


def make_accelerator(cfg: DictConfig, run_dir: Path, find_unused_parameters: bool) -> Accelerator:
    """The run's ``Accelerator``.

    ``find_unused_parameters``: only when a fusion method or task can leave trainable parameters without a gradient
    (DDP then traverses the autograd graph after every forward to find them).
    """
    acc = Accelerator(
        gradient_accumulation_steps=cfg.train.grad_accum,
        mixed_precision=cfg.train.mixed_precision,
        log_with=None if cfg.run.tracker == "none" else cfg.run.tracker,
        project_dir=str(run_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        cpu=multi_process_cpu(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )
    ds_plugin = acc.state.deepspeed_plugin
    if ds_plugin is not None and ds_plugin.deepspeed_config.get("gradient_clipping") == "auto":
        # DeepSpeed clips inside its own step (our clip_grad_norm_ call is then a no-op): give it optim.clip_grad
        ds_plugin.deepspeed_config["gradient_clipping"] = cfg.optim.clip_grad
    return acc


def is_zero3(acc: Accelerator) -> bool:
    plugin = acc.state.deepspeed_plugin
    return plugin is not None and plugin.zero_stage == 3


def fused_optimizer_ok(acc: Accelerator) -> bool:
    """Whether our own fused AdamW steps the parameters: not under DeepSpeed (its engine steps) or FSDP (sharded
    DTensor parameters)."""
    return acc.state.deepspeed_plugin is None and getattr(acc.state, "fsdp_plugin", None) is None


@contextlib.contextmanager
def building_model(acc: Accelerator) -> Iterator[None]:
    """Context to build the model in: under ZeRO-3, transformers would build the text tower alone under
    ``deepspeed.zero.Init`` (partitioned, already bf16) while timm builds the rest as usual, and ZeRO-3 then
    refuses a model of two dtypes; built whole on the CPU, DeepSpeed casts and partitions all of it in prepare()."""
    if not is_zero3(acc):
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        acc.state.deepspeed_plugin.set_deepspeed_weakref()


def before_prepare(acc: Accelerator, model: nn.Module) -> None:
    """ZeRO-3 gathers a parameter only for the module that owns it: register those used by another module."""
    if is_zero3(acc):
        from deepspeed.runtime.zero import register_external_parameter

        for module, param in model.external_parameters():
            register_external_parameter(module, param)


def compile_model(model: nn.Module) -> None:
    """``torch.compile`` in place, so state-dict keys and unwrapping stay as without compile."""
    vision = model.vision
    if vision is not None and vision.channels_last:
        # Inductor's convolution_backward meta kernel predicts NCHW weight gradients where CUDA returns channels-last
        # ones, and the compiled step fails (pytorch/pytorch#171622; seen with torch 2.11 on an H100). Inductor
        # picks convolution layouts itself, so the switch is not needed there.
        warnings.warn("model.vision.channels_last is turned off under train.compile (pytorch/pytorch#171622); "
                      "torch.compile chooses the convolution memory format itself", stacklevel=2)
        vision.set_channels_last(False)
    model.compile()
