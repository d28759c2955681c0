"""Atomic, resumable training checkpoints and the preemption signals that trigger them.

A checkpoint holds everything needed to continue bit-exactly on CPU: module and optimizer state,
the global step and the loss history. Randomness is derived from (seed, step), so nothing else is
needed. Files are written to a temporary sibling and renamed, so a job killed mid-write (SIGKILL,
node failure) leaves the previous checkpoint intact.

SLURM sends SIGTERM on preemption/cancel and, with ``--signal=USR1@<s>``, SIGUSR1 before the time
limit. :class:`StopRequest` records either; the training loop checkpoints at the next step boundary
and raises :class:`Preempted`, which exits non-zero so Snakemake's retry resumes the job.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import torch

log = logging.getLogger("fmrirecon.train")

CHECKPOINT_NAME = "checkpoint.pt"


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint; the retry resumes from it."""


class StopRequest:
    """Context manager that turns SIGTERM / SIGUSR1 into a flag polled by the training loop."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.signum = signum
        log.warning("received %s: will checkpoint and stop", signal.Signals(signum).name)

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some test runners): no handler
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    @property
    def requested(self) -> bool:
        return self.signum is not None


def save_checkpoint(folder: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` atomically to ``folder/checkpoint.pt``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_NAME
    tmp = folder / f".{CHECKPOINT_NAME}.partial"
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(folder: str | os.PathLike, fingerprint: str) -> dict | None:
    """The saved state if it belongs to this exact job (same ``fingerprint``), else None.

    A checkpoint from other settings or inputs is ignored with a log line (and later replaced), so
    a changed config never resumes from stale weights.
    """
    path = Path(folder) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated file from an old, non-atomic writer
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("ignoring checkpoint %s: it belongs to other settings or inputs", path)
        return None
    return state


def clear_checkpoint(folder: str | os.PathLike) -> None:
    """Remove a finished job's checkpoint folder."""
    shutil.rmtree(folder, ignore_errors=True)
