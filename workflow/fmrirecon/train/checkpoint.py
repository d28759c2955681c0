"""Atomic, resumable training checkpoints and the preemption signals that trigger them.

A checkpoint holds everything needed to continue bit-exactly on CPU: module and optimizer state,
the global step and the loss history. Randomness is derived from (seed, step), so nothing else is
needed. Files are written to a temporary sibling and renamed, so a job killed mid-write (SIGKILL,
node failure) leaves the previous checkpoint intact.

SLURM sends SIGTERM on preemption/cancel and, with ``--signal=USR1@<s>``, SIGUSR1 before the time
limit. :class:`StopRequest` records either; the training loop checkpoints at the next step boundary
and raises :class:`Preempted`; the job exits with :data:`PREEMPTED_EXIT` (75), so Snakemake's retry
resumes it.
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
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: the job's exit code after a signal and a checkpoint


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
    """Write ``state`` atomically to ``folder/checkpoint.pt``.

    ``state`` may hold only dicts, lists, tuples, tensors, numbers, strings, booleans and None, so
    that :func:`load_checkpoint` can read it with ``weights_only=True`` (a checkpoint is never
    unpickled with arbitrary code).

    Raises:
        TypeError: ``state`` holds anything else.
    """
    _check_plain(state, "state")
    folder = Path(folder)
    path = folder / CHECKPOINT_NAME
    tmp = folder / f".{CHECKPOINT_NAME}.partial"
    for attempt in range(3):  # another job's clear_checkpoint may remove an empty parent meanwhile
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(state, tmp)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def _check_plain(obj, where: str) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, where)
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)) and not isinstance(obj, torch.Size):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(
            f"checkpoint {where} is a {type(obj).__module__}.{type(obj).__qualname__}; a checkpoint holds only "
            "dicts, lists, tensors, numbers and strings (it is loaded with weights_only=True)"
        )


def load_checkpoint(folder: str | os.PathLike, fingerprint: str) -> dict | None:
    """The saved state if it belongs to this exact job (same ``fingerprint``), else None.

    The file is read with ``weights_only=True``: tensors and plain containers only, never code, so
    a planted or corrupt file cannot run anything. Anything unreadable is ignored with one log line
    (the job starts fresh and later replaces it). A checkpoint from other settings or inputs is
    ignored too, so a changed config never resumes from stale weights.
    """
    path = Path(folder) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"holds a {type(state).__name__}, not a dict")
    except Exception as exc:  # truncated, foreign, or not loadable without running code
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        log.warning("ignoring unreadable checkpoint %s (%s: %s)", path, type(exc).__name__, first)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("ignoring checkpoint %s: it belongs to other settings or inputs", path)
        return None
    return state


def clear_checkpoint(folder: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
    """Remove a finished job's checkpoint folder, then its parents while they are empty.

    The climb stops below ``root`` (the configured ``training.checkpoint_dir``, never removed) or,
    without ``root``, below the outermost ancestor named ``checkpoints``; without either only
    ``folder`` goes. It never removes a folder that is not empty (another job's checkpoint may sit
    next to this one), nor the working directory or anything above it.
    """
    folder = Path(os.path.abspath(folder))
    shutil.rmtree(folder, ignore_errors=True)
    if root is not None:
        stop = Path(os.path.abspath(root))
    else:
        named = [p for p in folder.parents if p.name == "checkpoints"]
        stop = named[-1] if named else None
    if stop is None or stop == folder or stop not in folder.parents:
        return
    cwd = Path(os.getcwd()).resolve()
    parent = folder.parent
    while parent != stop and parent != parent.parent:
        try:
            if parent.resolve() == cwd or parent.resolve() in cwd.parents:
                return
            parent.rmdir()  # fails unless empty
        except OSError:
            return
        parent = parent.parent
