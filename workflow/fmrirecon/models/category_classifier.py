"""Paper 004's multi-label category classifier: a 1-D CNN over the vertex vector of both hemispheres.

The paper (§III.C, Fig. 2) gives three convolutional blocks, max pooling, dense layers, ReLU and a
focal loss; the layer sizes come from their code (``A-Ariyanuchitkul/G20_ML2023``,
``project_classification.ipynb`` at HEAD a66db7b, cell 45–46)::

    Conv1D 32 k3 · BN · ReLU · Conv1D 32 k3 · BN · ReLU · MaxPool 2
    Conv1D 64 k3 · BN · ReLU · Conv1D 64 k3 · BN · ReLU · MaxPool 2
    Conv1D 128 k3 · BN · ReLU · Conv1D 128 k3 · BN · ReLU · MaxPool 2
    Flatten · Dense 256 ReLU · Dense 256 ReLU · Dense 133 sigmoid

Keras defaults carried over: ``valid`` convolutions with a bias, Glorot-uniform weights and zero
biases, BatchNormalization with momentum 0.99 (torch: 0.01) and epsilon 1e-3. The network returns
*logits*; the sigmoid is in the loss (``losses_pix2pix``) and in :meth:`CategoryCNN.probabilities`.
Keras flattens (length, channels) and torch (channels, length): a fixed permutation of the first
dense layer's inputs, immaterial when training from scratch.

Input layout (cells 25 and 41): each hemisphere's vertex vector (Algonauts 2023: 19,004 left and
20,544 right vertices for subj01) is zero-padded to ``fit_fmri_target_size = 21025`` (= 145²), then
min–max scaled over its whole array — every sample and vertex of that hemisphere at once, the
padding zeros included, per subject and per split — and the two hemispheres are stacked as two
channels: (N, 2, 21025) here (channels-last (N, 21025, 2) in Keras). :func:`hemisphere_channels`
does exactly that; paper 004's pix2pix map (:func:`.pix2pix.fmri_map`) reshapes the same vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import SavedNetwork

#: their ``fit_fmri_target_size`` (145 × 145): the length both hemispheres are zero-padded to
PADDED_LENGTH = 21025

SIZES = {
    # channels: the two convolutions of each block; dense: the hidden dense layers
    "tiny": {"channels": (8, 16, 32), "dense": (32, 32)},
    "paper": {"channels": (32, 64, 128), "dense": (256, 256)},
}


def pad_vertices(x: np.ndarray, length: int, what: str = "fMRI") -> np.ndarray:
    """Zero-pad vertex vectors (N, V) on the right to (N, length)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected (samples, vertices), got shape {x.shape}")
    if x.shape[1] > length:
        raise ValueError(f"{what}: {x.shape[1]} vertices do not fit the padded length {length}")
    out = np.zeros((x.shape[0], length), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out


def minmax_scale(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``(x - lo) / (hi - lo)`` with one ``lo``/``hi`` for the whole array (its min and max by
    default, as their ``min_max_normalize``); a constant array maps to 0."""
    x = np.asarray(x, dtype=np.float32)
    lo = float(x.min()) if lo is None else float(lo)
    hi = float(x.max()) if hi is None else float(hi)
    if hi <= lo:
        return np.zeros_like(x)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def hemisphere_channels(left: np.ndarray, right: np.ndarray, length: int = PADDED_LENGTH,
                        scale: bool = True) -> np.ndarray:  # fmt: skip
    """Left (N, V_l) and right (N, V_r) vertex vectors → (N, 2, length) float32: each zero-padded to
    ``length``, then (``scale``) min–max scaled over its whole padded array, then stacked."""
    if len(left) != len(right):
        raise ValueError(f"left and right hemisphere differ in samples: {len(left)} vs {len(right)}")
    chans = [pad_vertices(h, length, f"{name} hemisphere") for name, h in (("left", left), ("right", right))]
    if scale:
        chans = [minmax_scale(c) for c in chans]
    return np.stack(chans, axis=1)


def _glorot_uniform(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class CategoryCNN(SavedNetwork, nn.Module):
    """(B, C, L) hemisphere channels → (B, n_labels) logits (sigmoid per label: multi-label)."""

    FILE_KEY = "classifier"

    def __init__(self, n_labels: int = 133, length: int = PADDED_LENGTH, in_channels: int = 2, size: str = "paper"):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"category classifier size {size!r}: expected one of {sorted(SIZES)}")
        d = SIZES[size]
        self.hparams = {"n_labels": int(n_labels), "length": int(length), "in_channels": int(in_channels), "size": size}
        layers, c_in, n = [], in_channels, int(length)
        for c in d["channels"]:
            for _ in range(2):
                layers += [nn.Conv1d(c_in, c, 3), nn.BatchNorm1d(c, eps=1e-3, momentum=0.01), nn.ReLU()]
                c_in, n = c, n - 2
            layers.append(nn.MaxPool1d(2))
            n //= 2
        if n < 1:
            raise ValueError(f"category classifier: input length {length} is too short for {len(d['channels'])} blocks")
        self.features = nn.Sequential(*layers)
        dense, f_in = [], c_in * n
        for width in d["dense"]:
            dense += [nn.Linear(f_in, width), nn.ReLU()]
            f_in = width
        self.head = nn.Sequential(nn.Flatten(), *dense, nn.Linear(f_in, n_labels))
        self.flat_features = c_in * n
        _glorot_uniform(self)

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["n_labels"], hp["length"], hp["in_channels"], hp["size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        if x.ndim != 3 or x.shape[1] != hp["in_channels"] or x.shape[2] != hp["length"]:
            raise ValueError(f"category classifier: expected input (B, {hp['in_channels']}, {hp['length']}), "
                             f"got {tuple(x.shape)}")  # fmt: skip
        return self.head(self.features(x))

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-label sigmoid probabilities (their final ``Dense(133, activation="sigmoid")``)."""
        return torch.sigmoid(self(x))
