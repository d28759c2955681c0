"""Learning-rate schedules as pure functions of the global step (so a resumed run is exact)."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, settings: dict) -> float:
    """Learning rate at optimizer step ``step`` (0-based) of ``total_steps``.

    ``settings``: ``lr`` (peak), ``schedule`` one of
      - ``constant``;
      - ``cosine``: linear warm-up over ``warmup_fraction`` of the run, cosine to ``lr_min``;
      - ``sgdr``: paper 000's SGDR, ``cycles`` equal cycles, each a linear warm-up (``warmup_fraction``
        of the cycle) to ``lr`` then a cosine decay to ``lr_min`` (Loshchilov & Hutter warm restarts);
      - ``step_decay``: paper 004's Keras scheduler: ``lr`` for epochs before ``decay_start_epoch``,
        then times ``decay_factor`` at the start of every later epoch (epoch ``e`` >= start:
        ``lr * decay_factor ** (e - start + 1)``); needs ``epochs`` (the epoch is
        ``step * epochs // total_steps``).
    """
    lr, lr_min = float(settings["lr"]), float(settings.get("lr_min", 0.0))
    kind = settings.get("schedule", "constant")
    warm = float(settings.get("warmup_fraction", 0.0))
    if kind == "constant":
        return lr
    if kind == "step_decay":
        epoch = int(step) * int(settings["epochs"]) // max(1, int(total_steps))
        start = int(settings.get("decay_start_epoch", 10))
        return lr * float(settings.get("decay_factor", 0.1)) ** max(0, epoch - start + 1)
    if kind == "cosine":
        cycle_len, pos = total_steps, step
    elif kind == "sgdr":
        cycles = max(1, int(settings.get("cycles", 1)))
        cycle_len = max(1, math.ceil(total_steps / cycles))
        pos = step % cycle_len
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    n_warm = int(round(warm * cycle_len))
    if pos < n_warm:
        return lr_min + (lr - lr_min) * (pos + 1) / n_warm
    span = max(1, cycle_len - n_warm - 1)  # the last step of a cycle sits at lr_min
    t = min(1.0, (pos - n_warm) / span)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * t))
