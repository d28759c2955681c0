"""Write outputs so that a failure never leaves a half-written file or folder behind."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path; move it onto ``path`` only if the block succeeds.

    Works for files and folders. On error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    if not _is_main_process():  # data-parallel workers: only rank 0 writes the real outputs
        import tempfile

        with tempfile.TemporaryDirectory(prefix="fmrirecon-rank-") as scratch:
            yield Path(scratch) / path.name
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    _remove(tmp)
    try:
        yield tmp
        _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _is_main_process() -> bool:
    import sys

    dist = sys.modules.get("torch.distributed")  # never import torch just to ask
    return not (dist is not None and dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def save_npz_deterministic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` but byte-identical for identical arrays (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buf.getvalue())


def jsonable(obj):
    """``obj`` with numpy arrays and scalars as plain lists and numbers, and NaN/inf as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """JSON with sorted keys (numpy values as plain numbers, NaN/inf as null), written atomically."""
    import json

    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(jsonable(payload), fh, indent=1, sort_keys=True)
