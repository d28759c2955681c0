"""Progress lines a person can follow in a long job's log: one every ``FMRIRECON_PROGRESS_SECONDS``
seconds of wall-clock time (default 30; 0 = every step) and one at the end, never one per step::

    train_ldm: step 450/1000 (45.0%) epoch 5/10 loss=0.1234 | 3.21 steps/s 102.7 samples/s | elapsed 0:02:20 eta 0:02:51

``loss`` is the mean over the steps since the previous line; the rates, the elapsed time and the
estimate of the time left are measured since this process (re)started, so a resumed job's estimate
counts only the steps it still has to do. :meth:`Progress.update` reads the clock once and adds a
number or two; it draws no random numbers and touches no tensor, so it changes no result.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping

PROGRESS_ENV = "FMRIRECON_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0

_log = logging.getLogger("fmrirecon.progress")


def progress_seconds() -> float:
    """The interval between progress lines: ``$FMRIRECON_PROGRESS_SECONDS`` (default 30, 0 = every step)."""
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        _log.warning("%s=%r is not a number of seconds >= 0: using %g", PROGRESS_ENV, raw, DEFAULT_SECONDS)
        return DEFAULT_SECONDS
    return value


def format_duration(seconds: float) -> str:
    """Seconds as ``H:MM:SS`` (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Log ``name``'s progress through ``total`` steps at a steady wall-clock interval.

    Args:
        name: the stage / model shown at the start of every line.
        total: the number of steps of the whole job (all attempts).
        start: the step this process starts from (a resumed job: its checkpoint's step).
        per_epoch: steps per epoch, to show ``epoch e/E`` (None: not shown).
        epoch_word: what an "epoch" is called (``batch`` for sampling in batches).
        unit: what a step is called in the rate (``steps/s``).
        interval: seconds between lines (default :func:`progress_seconds`).
        logger: where the lines go (default ``fmrirecon.progress``).
        clock: a monotonic time function (tests inject a fake one).
        enabled: False logs nothing (ranks other than 0 of a data-parallel job).
    """

    def __init__(self, name: str, total: int, *, start: int = 0, per_epoch: int | None = None,
                 epoch_word: str = "epoch", unit: str = "steps", interval: float | None = None,
                 logger: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic,
                 enabled: bool = True):  # fmt: skip
        self.name, self.total, self.start = name, int(total), int(start)
        self.per_epoch = int(per_epoch) if per_epoch else None
        self.epoch_word, self.unit = epoch_word, unit
        self.interval = progress_seconds() if interval is None else float(interval)
        self.log = logger or _log
        self.clock = clock
        self.enabled = enabled
        self.t0 = clock()
        self.next_at = self.t0 + self.interval
        self.step = self.start
        self.samples = 0.0
        self._sums: dict[str, float] = {}
        self._n = 0
        self._last_loss: dict[str, float] = {}
        self.lines = 0  # progress lines logged so far

    def update(self, step: int, loss: float | Mapping[str, float] | None = None, n_samples: float = 0) -> bool:
        """Record that ``step`` steps are done (the last one on ``n_samples`` samples, with
        ``loss``: a number, a mapping of named numbers, or None); log a line when one is due.
        Returns whether it logged."""
        if not self.enabled:
            return False
        self.step = int(step)
        self.samples += n_samples
        if loss is not None:
            for k, v in (loss.items() if isinstance(loss, Mapping) else (("loss", loss),)):
                self._sums[k] = self._sums.get(k, 0.0) + float(v)
            self._n += 1
        now = self.clock()
        if now < self.next_at:
            return False
        self._emit(now, "")
        # the next line one interval after this one (not after the missed ticks of a slow step)
        self.next_at = now + self.interval
        return True

    def done(self) -> None:
        """Log the closing line (whatever the interval)."""
        if self.enabled:
            self._emit(self.clock(), "done ")

    # -- the line --------------------------------------------------------------------------
    def rates(self, now: float) -> tuple[float, float, float]:
        """(steps/s, samples/s, seconds left) since this process's start."""
        elapsed = now - self.t0
        done = self.step - self.start
        steps_per_s = done / elapsed if elapsed > 0 else 0.0
        samples_per_s = self.samples / elapsed if elapsed > 0 else 0.0
        left = max(0, self.total - self.step)
        eta = 0.0 if left == 0 else (left / steps_per_s if steps_per_s > 0 else math.inf)
        return steps_per_s, samples_per_s, eta

    def line(self, now: float, prefix: str = "") -> str:
        steps_per_s, samples_per_s, eta = self.rates(now)
        pct = 100.0 * self.step / self.total if self.total else 100.0
        parts = [f"{self.name}: {prefix}step {self.step}/{self.total} ({pct:.1f}%)"]
        if self.per_epoch:
            epochs = max(1, math.ceil(self.total / self.per_epoch))
            parts.append(f"{self.epoch_word} {min(epochs, max(1, math.ceil(self.step / self.per_epoch)))}/{epochs}")
        if self._n:
            self._last_loss = {k: v / self._n for k, v in self._sums.items()}
            self._sums, self._n = {}, 0
        parts += [f"{k}={v:.4g}" for k, v in self._last_loss.items()]
        rate = f"| {steps_per_s:.3g} {self.unit}/s"
        if self.samples:
            rate += f" {samples_per_s:.4g} samples/s"
        parts.append(rate)
        parts.append(f"| elapsed {format_duration(now - self.t0)} eta {format_duration(eta)}")
        if self.start:
            parts.append(f"(resumed at step {self.start})")
        return " ".join(parts)

    def _emit(self, now: float, prefix: str) -> None:
        self.log.info("%s", self.line(now, prefix))
        self.lines += 1
