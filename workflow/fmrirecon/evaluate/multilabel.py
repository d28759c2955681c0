"""Scores of paper 004's multi-label category classifier.

``scores`` (N, L) are per-label probabilities or logits (only their order matters), ``labels``
(N, L) multi-hot truth.

- :func:`keras_categorical_accuracy` — what the paper calls accuracy (30% → 54.7%): their code
  compiles the sigmoid classifier with ``keras.metrics.CategoricalAccuracy()`` on multi-hot
  labels (``project_classification.ipynb`` cell 51), i.e. ``argmax(scores) == argmax(labels)``: the
  top prediction must be the *first* positive label (the lowest column index). A row without
  positive labels has ``argmax = 0`` and counts as "label 0". Reported for comparability only.
- :func:`top1_in_true_set` — the honest top-1: the top prediction is any of the image's labels.
- :func:`average_precisions` / :func:`mean_average_precision` — per-label average precision
  (sklearn's definition: Σ_k (R_k − R_{k−1}) P_k over the distinct score thresholds), and their
  mean over labels with at least one positive.

The accuracy functions return per-image values, so callers can bootstrap over images.
"""

from __future__ import annotations

import numpy as np


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"multi-label scores {scores.shape} and labels {labels.shape} must both be (N, L)")
    return scores, labels != 0


def keras_categorical_accuracy(scores, labels) -> np.ndarray:
    """Per image 1.0 when ``argmax(scores)`` is the first positive label (Keras' semantics), else 0."""
    scores, truth = _check(scores, labels)
    return (scores.argmax(1) == truth.argmax(1)).astype(np.float64)


def top1_in_true_set(scores, labels) -> np.ndarray:
    """Per image 1.0 when ``argmax(scores)`` is one of its labels; NaN for images without labels."""
    scores, truth = _check(scores, labels)
    hit = truth[np.arange(len(scores)), scores.argmax(1)].astype(np.float64)
    return np.where(truth.any(1), hit, np.nan)


def average_precisions(scores, labels) -> np.ndarray:
    """(L,) average precision of each label (NaN for a label without positives)."""
    scores, truth = _check(scores, labels)
    out = np.full(scores.shape[1], np.nan)
    for j in range(scores.shape[1]):
        pos = truth[:, j]
        n_pos = int(pos.sum())
        if n_pos == 0:
            continue
        order = np.argsort(-scores[:, j], kind="stable")
        s, y = scores[order, j], pos[order]
        tp, fp = np.cumsum(y), np.cumsum(~y)
        last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tied score group
        precision, recall = tp[last] / (tp[last] + fp[last]), tp[last] / n_pos
        out[j] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return out


def mean_average_precision(scores, labels) -> float:
    """Mean of :func:`average_precisions` over the labels with at least one positive."""
    ap = average_precisions(scores, labels)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
