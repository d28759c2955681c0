"""What every family's stage functions share: tensors from the prepared files with an explicit
image range, one fingerprint policy for resumable training, batched inference, and the one
``recon.h5`` writer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..config import config_hash
from ..data import prepared
from ..errors import InputError
from ..train.progress import Progress

log = logging.getLogger(__name__)

#: The two value ranges networks here take images in.
UNIT, SYMMETRIC = (0.0, 1.0), (-1.0, 1.0)


# -- tensors from the prepared files -----------------------------------------------------------
def image_tensor(images: np.ndarray, size: int | None = None, value_range=UNIT) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, size, size) in ``value_range`` ([0, 1] or [-1, 1]);
    resized (bilinear, antialiased) only when ``size`` is given and differs."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    if tuple(value_range) == UNIT:
        x = x / 255.0
    elif tuple(value_range) == SYMMETRIC:
        x = x / 127.5 - 1.0
    else:
        raise ValueError(f"value_range must be {UNIT} or {SYMMETRIC}, got {value_range}")
    if size and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(-1, 1) if tuple(value_range) == SYMMETRIC else x


def load_image_tensors(path: str, splits, size: int | None, value_range=UNIT) -> dict[str, torch.Tensor]:
    """``images.h5`` splits -> :func:`image_tensor` each; empty or absent splits are left out."""
    stim = prepared.read_images_file(path, splits=tuple(set(splits) | {"train", "test"}))
    out = {}
    for split in splits:
        part = getattr(stim, split)
        if part is not None and len(part):
            out[split] = image_tensor(part.images, size, value_range)
    return out


def finite_fmri(d, key: str, path: str) -> np.ndarray:
    """``d[key]`` of a prepared subject file as float32, refusing NaN or inf with one line."""
    x = np.asarray(d[key], np.float32)
    if not np.isfinite(x).all():
        raise InputError(f"{path}: /{key} contains NaN or inf values")
    return x


# -- resumable training --------------------------------------------------------------------------
def content_digest(path: str | Path) -> str:
    """sha256 of a file, or of every file (name and content) in a folder."""
    p = Path(path)
    if not p.is_dir():
        return prepared.sha256_file(p)
    files = sorted(f for f in p.rglob("*") if f.is_file())
    return config_hash([(str(f.relative_to(p)), prepared.sha256_file(f)) for f in files])


def fingerprint(stage: str, settings, seed: int, inputs, training: dict, device: torch.device) -> str:
    """Identity of one training job: a checkpoint resumes only a job with the same one.

    Content hashes of the inputs + the stage's settings + seed + package version + precision and
    device kind (bf16 on CUDA and fp32 on CPU do not continue each other's runs).
    """
    return config_hash(
        stage, settings, int(seed), [content_digest(p) for p in inputs if p], __version__,
        device.type, training.get("precision", "bf16") if device.type == "cuda" else "fp32",
    )  # fmt: skip


# -- inference -----------------------------------------------------------------------------------
def batched(fn, *xs: torch.Tensor, device, batch: int = 64, progress: str | None = None):
    """``fn`` over aligned chunks of ``xs`` without gradients, results on the CPU, concatenated.

    ``fn`` returns a tensor (-> one tensor) or a list of tensors (-> a list, each concatenated).
    ``progress``: a name to log progress lines under (:class:`~fmrirecon.train.progress.Progress`,
    one step per chunk), for long passes; None logs nothing.
    """
    outs = []
    n = len(xs[0])
    bar = Progress(progress, -(-n // batch), unit="batches") if progress else None
    with torch.no_grad():
        for k, s in enumerate(range(0, n, batch), 1):
            y = fn(*[x[s : s + batch].to(device) for x in xs])
            outs.append([t.float().cpu() for t in y] if isinstance(y, (list, tuple)) else y.float().cpu())
            if bar:
                bar.update(k, None, min(batch, n - s))
    if bar:
        bar.done()
    if not outs:
        return torch.zeros(0)
    if isinstance(outs[0], list):
        return [torch.cat(parts) for parts in zip(*outs)]
    return torch.cat(outs)


# -- reconstructions -----------------------------------------------------------------------------
def to_uint8(x: torch.Tensor, value_range=UNIT) -> np.ndarray:
    """float (N, 3, H, W) in ``value_range`` -> uint8 (N, H, W, 3), clamped and rounded."""
    if tuple(value_range) == UNIT:
        y = (x.clamp(0, 1) * 255.0).round().to(torch.uint8)
    elif tuple(value_range) == SYMMETRIC:
        y = ((x.clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    else:
        raise ValueError(f"value_range must be {UNIT} or {SYMMETRIC}, got {value_range}")
    return y.permute(0, 2, 3, 1).numpy()


def write_reconstructions(output: str, images: np.ndarray, data, test_names: np.ndarray, *, method: str,
                          family: str, seed: int, transductive: bool = False, **provenance) -> None:  # fmt: skip
    """``recon.h5`` of one method for one prepared subject file ``data`` (its test order).

    ``images`` are uint8 (N, [S,] H, W, 3) in the order of ``data["test/image_index"]``;
    ``transductive`` records that training saw the test fMRI (never the test images).
    """
    rows = data["test/image_index"]
    attrs = {"method": method, "family": family, "seed": int(seed), "transductive_test_fmri": int(bool(transductive)),
             **{k: v for k, v in data.attrs.items() if k in ("dataset", "subject", "roi")}, **provenance}  # fmt: skip
    prepared.write_recon_file(output, images, rows, test_names[rows], attrs)
    log.info("wrote %s: %s%s", output, images.shape, " (TRANSDUCTIVE: test fMRI used in training)" if transductive else "")
