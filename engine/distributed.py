"""What the loop needs to know about where it runs: several CPU processes, DeepSpeed, ZeRO-3, FSDP."""

from __future__ import annotations

import os


def multi_process_cpu() -> bool:
    """True in a process launched as one of several (``WORLD_SIZE`` > 1) on a machine without a GPU.

    Accelerate picks DDP over gloo (MULTI_CPU) only when told ``cpu=True``; otherwise each launched process
    silently trains alone. Pass this as ``Accelerator(cpu=...)``.
    """
    import torch

    has_device = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_device
