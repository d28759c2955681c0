"""Optimisers of the Trainer: one per phase of a step, built from a stage's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# settings a phase may set for itself; the others (epochs, batch_size) belong to the whole run
PHASE_KEYS = ("optimizer", "lr", "lr_min", "schedule", "warmup_fraction", "cycles", "decay_start_epoch",
              "decay_factor", "weight_decay", "betas", "grad_clip")  # fmt: skip
LR_KEYS = ("lr", "lr_min", "schedule", "warmup_fraction", "cycles", "decay_start_epoch", "decay_factor")


@dataclass
class Phase:
    """One optimiser of a multi-optimiser step (see the module doc).

    Args:
        name: prefix of its logged losses and key of its optimiser state in checkpoints.
        parameters: what its optimiser updates (and what its gradient clipping sees).
        step_fn: ``(batch_indices, generator) -> {"loss": tensor, ...}``; ``loss`` is backpropagated.
        settings: overrides of the Trainer's optimiser settings for this phase (``optimizer``,
            ``lr``, ``lr_min``, ``schedule``, ``warmup_fraction``, ``cycles``, ``weight_decay``,
            ``betas``, ``grad_clip``).
    """

    name: str
    parameters: object
    step_fn: Callable
    settings: dict = field(default_factory=dict)


@dataclass
class OptimiserState:
    """A phase at run time: its optimiser, resolved settings and seeding salts."""

    name: str
    parameters: list
    step_fn: Callable | None
    settings: dict
    optimizer: torch.optim.Optimizer
    seed_salt: int
    gen_salt: int
    prefix: str


def make_optimizer(parameters, settings: dict) -> torch.optim.Optimizer:
    """``settings['optimizer']`` (adam | adamw | sgd) over ``parameters`` with ``lr``,
    ``weight_decay`` and (Adam/AdamW) ``betas`` (default torch's (0.9, 0.999))."""
    kind = settings.get("optimizer", "adam")
    lr, wd = float(settings["lr"]), float(settings.get("weight_decay", 0.0))
    betas = tuple(float(b) for b in settings.get("betas", (0.9, 0.999)))
    if kind == "adam":
        return torch.optim.Adam(parameters, lr=lr, betas=betas, weight_decay=wd)
    if kind == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, betas=betas, weight_decay=wd)
    if kind == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=wd)
    raise ValueError(f"unknown optimizer {kind!r}")


def resolved_settings(settings: dict) -> dict:
    """``settings`` with every default the Trainer applies filled in (for summaries)."""
    out = {"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant", "lr_min": 0.0,
           "warmup_fraction": 0.0, "cycles": 1, "grad_clip": 0.0}  # fmt: skip
    out.update(settings)
    if out["optimizer"] in ("adam", "adamw"):
        out["betas"] = [float(b) for b in out.get("betas", (0.9, 0.999))]
    else:
        out.pop("betas", None)
        out["momentum"] = 0.9
    return out
