"""What a training job writes besides its model: the per-epoch loss log and the summary JSON
(throughput, peak memory, resolved settings)."""

from __future__ import annotations

import resource
import sys

import torch

from ..data.atomic import atomic_path, write_json


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    """(peak MiB, what it measures): CUDA's allocator peak on a GPU, else the process's peak RSS."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_peak_rss"


def format_row(row: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def write_train_summary(path: str, trainer, extra: dict | None = None) -> dict:
    """``trainer.summary()`` (plus ``extra``, which wins on equal keys) as JSON, written
    atomically (by rank 0 only when data-parallel); returns what was written."""
    payload = {**trainer.summary(), **(extra or {})}
    write_json(path, payload)
    return payload


def write_loss_log(path: str, history: list[dict]) -> None:
    """Per-epoch losses as TSV (the report plots it)."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(keys) + "\n")
        for row in history:
            fh.write("\t".join(str(row.get(k, "")) for k in keys) + "\n")
