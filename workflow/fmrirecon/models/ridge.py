"""The reference decoder: ridge regression from voxels to image pixels.

Not one of the papers' methods; it drives the evaluation chain end to end and is a floor every
method should beat. Solved in the dual (kernel) form, which is cheap when samples ≪ voxels ×
pixels: ``W = Xᵀ (X Xᵀ + α I)⁻¹ Y``. α is chosen on a held-out fifth of the training data.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)  # multiplied by the number of voxels


class RidgeDecoder:
    """(n, V) voxels → (n, D) targets. ``alphas`` are relative to the number of voxels."""

    def __init__(self, alphas=DEFAULT_ALPHAS, seed: int = 0):
        self.alphas = tuple(alphas)
        self.seed = seed

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, alpha: float):
        k = x @ x.T
        k[np.diag_indices_from(k)] += alpha
        return np.linalg.solve(k, y)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "RidgeDecoder":
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        self.y_mean = y.mean(0)
        self.x_mean = x.mean(0)
        xc, yc = x - self.x_mean, y - self.y_mean
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x))
        n_val = max(1, len(x) // 5)
        val, fit = order[:n_val], order[n_val:]
        scores = []
        for a in self.alphas:
            alpha = a * x.shape[1]
            dual = self._solve(xc[fit], yc[fit], alpha)
            pred = xc[val] @ xc[fit].T @ dual
            scores.append(np.mean((pred - yc[val]) ** 2))
        self.alpha = self.alphas[int(np.argmin(scores))] * x.shape[1]
        log.info("ridge: validation MSE %s -> alpha %.3g", np.round(scores, 5).tolist(), self.alpha)
        self.x_train = xc
        self.dual = self._solve(xc, yc, self.alpha)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        xc = np.asarray(x, np.float64) - self.x_mean
        return xc @ self.x_train.T @ self.dual + self.y_mean
