"""MinD-Vis' preparation of an unlabeled resting-state pool, one subject at a time (numpy only).

``code/dataset.py`` of MinD-Vis (``hcp_dataset`` → ``process_voxel_ts``), which CAD's
``vis_dec_neurips`` copies, turns one subject's ``(1200 TRs, n_vox)`` V1–V4 time series into
training samples in three steps, reproduced here:

1. :func:`window_average` — the time axis is cut into windows of ``8 // 0.75 = 10`` TRs (8 s at
   the 0.75 s the comment assumes; HCP's TR is 0.72 s) and each window is averaged:
   1200 TRs → 120 samples. MinD-Vis uses ``np.array_split``, which would make unequal windows
   when the TR count is not a multiple; we refuse such a file instead (one line).
2. :func:`wrap_pad` — the voxel vector is wrap-padded (its first voxels repeated at the end) to
   a multiple of the patch size (16). MinD-Vis' ``pad_to_patch_size`` adds
   ``patch - n_vox % patch`` voxels, i.e. a whole extra patch when ``n_vox`` is already a
   multiple; we pad to ``ceil(n_vox / patch) * patch`` (no extra patch), as
   :class:`fmrirecon.models.mae.FmriMAE` does.
3. :func:`scalar_zscore` — one mean and one standard deviation over the subject's whole padded
   array (``np.mean`` / ``np.std``, population sd), not per voxel or per sample.

MinD-Vis' optional interpolation augmentation (``aug_times``, 1 = off in its and CAD's configs)
is not reproduced.
"""

from __future__ import annotations

import math

import numpy as np


def window_average(v: np.ndarray, window: int) -> np.ndarray:
    """(T, V) → (T // window, V): the mean of each run of ``window`` consecutive TRs.

    Raises:
        ValueError: when ``T`` is not a multiple of ``window`` (the caller names the file).
    """
    t = v.shape[0]
    if window < 1 or t % window:
        raise ValueError(f"{t} TRs are not a multiple of the {window}-TR window")
    return v.reshape(t // window, window, v.shape[1]).mean(axis=1)


def padded_length(n_voxels: int, patch: int) -> int:
    return math.ceil(n_voxels / patch) * patch


def wrap_pad(x: np.ndarray, patch: int) -> np.ndarray:
    """(N, V) → (N, ceil(V / patch) * patch), the first voxels repeated at the end (cyclically,
    as ``np.pad(mode='wrap')``)."""
    n = padded_length(x.shape[1], patch)
    return np.tile(x, (1, -(-n // x.shape[1])))[:, :n]


def scalar_zscore(x: np.ndarray) -> np.ndarray:
    """One mean and one (population) sd over the whole array."""
    sd = float(x.std())
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def prepare_subject(v: np.ndarray, window: int, patch: int) -> np.ndarray:
    """One subject's (T, V) time series → (T // window, padded V) samples, float32."""
    return scalar_zscore(wrap_pad(window_average(np.asarray(v, np.float64), window), patch)).astype(np.float32)
