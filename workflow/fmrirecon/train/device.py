"""Where a job computes: the GPU it was given (bf16 autocast), else CPU with a log line."""

from __future__ import annotations

import contextlib
import logging

import torch

from ..errors import InputError

log = logging.getLogger("fmrirecon.train")


def select_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when a GPU is visible (SLURM sets ``CUDA_VISIBLE_DEVICES``), else CPU.

    Raises:
        InputError: ``cuda`` was asked for and no GPU is visible.
    """
    available = torch.cuda.is_available()
    if preference == "cuda" and not available:
        raise InputError(
            "training.device is 'cuda' but torch sees no GPU (CUDA_VISIBLE_DEVICES / the job's "
            "--gpus request); use device: auto to fall back to CPU"
        )
    if preference == "cpu" or not available:
        if preference == "auto":
            log.info("no CUDA device visible: training on CPU (fp32)")
        return torch.device("cpu")
    device = torch.device("cuda")
    log.info("training on %s (%s)", device, torch.cuda.get_device_name(0))
    return device


def autocast(device: torch.device, precision: str = "bf16"):
    """bf16 autocast on CUDA when asked; a no-op on CPU (fp32 keeps CPU runs reproducible)."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
