"""Rule ``reconstruct_baseline``: the ridge reference decoder and the control reconstructions."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import torch

from ...data import prepared
from ...errors import InputError
from ...models.ridge import RidgeDecoder
from ..common import to_uint8, write_reconstructions
from . import FAMILIES

log = logging.getLogger(__name__)


def _pixels(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) → float (N, size*size*3) in [0, 1], box-downsampled to ``size``."""
    n, h, w, _ = images.shape
    if h % size or w % size:
        raise InputError(f"ridge target_size {size} must divide the image size {h}")
    f = h // size
    x = images.reshape(n, size, f, size, f, 3).mean(axis=(2, 4)) / 255.0
    return x.reshape(n, -1)


def _to_images(flat: np.ndarray, size: int, out_size: int) -> np.ndarray:
    """(N, size*size*3) in [0, 1] -> uint8 (N, out_size, out_size, 3), each pixel a block."""
    x = flat.reshape(len(flat), size, size, 3)
    f = out_size // size
    x = x.repeat(f, axis=1).repeat(f, axis=2)
    return to_uint8(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2))


def reconstruct_baseline(
    data: str, images: str, method: str, settings: dict, seed: int, recon: str, truth: str = ""
) -> None:
    """Rule ``reconstruct_baseline``: fit on the training pairs, reconstruct the test fMRI."""
    family = settings["family"]
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test"))
    size = stim.train.images.shape[1]
    target = int(settings.get("target_size") or size)
    test_rows = d["test/image_index"]
    if family == "mean_image":
        mean = stim.train.images.astype(np.float64).mean(0)
        out = np.repeat(np.round(mean)[None].astype(np.uint8), len(test_rows), axis=0)
    elif family in ("ridge", "oracle_ridge"):
        x_train, x_test = d["train/fmri"], d["test/fmri"]
        y_train = _pixels(stim.train.images[d["train/image_index"]], target)
        if family == "oracle_ridge":
            x_train, x_test, y_train = _oracle_inputs(d, stim, truth, target)
        model = RidgeDecoder(alphas=settings.get("alphas") or (0.1, 1.0, 10.0, 100.0, 1000.0), seed=seed)
        out = _to_images(model.fit(x_train, y_train).predict(x_test), target, size)
    else:
        raise InputError(f"method {method!r}: family {family!r} is not one of {[f.name for f in FAMILIES]}")
    write_reconstructions(recon, out, d, stim.test.names, method=method, family=family, seed=seed)


def _oracle_inputs(d, stim, truth: str, target: int):
    if not truth or not Path(truth).exists():
        raise InputError("oracle_ridge needs the simulation truth file: it only runs on simulated datasets")
    subject = d.attrs["subject"]
    cols = d["voxels/source_index"]
    with h5py.File(truth, "r") as f:
        if f"sub-{subject}" not in f:
            raise InputError(f"{truth}: no noise-free signals for subject {subject}")
        sig_train = f[f"sub-{subject}/signal_train"][()][:, cols]
        sig_test = f[f"sub-{subject}/signal_test"][()][:, cols]
    # truth rows follow the image lists, as images.h5 does
    y_train = _pixels(stim.train.images, target)
    return sig_train, sig_test[d["test/image_index"]], y_train
