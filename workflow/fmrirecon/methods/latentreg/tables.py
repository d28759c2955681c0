"""Rule ``summarise_latentreg``: paper 003's Table 3 on our data — the test MSE of each method's
predicted latents (``z`` image, ``c`` text) against the true ones, with controls.

Rows of ``results/report/latentreg/table3.csv`` per regressor branch of a unit (dataset, subject,
ROI, latent, regressor; ``methods`` lists the methods that use it):

- ``mse``: mean over test images of the per-image MSE (over the latent's elements), with a 95%
  percentile-bootstrap CI over test images (the paper reports the bare mean);
- ``shuffled_pairs``: the same predictions scored against the true latent of *another* test image
  (a seeded derangement): a prediction that carries nothing image-specific scores the same as
  here, so a regressor that decodes the image sits clearly below it;
- ``training_mean``: the training images' mean latent as the prediction for every test image
  (no fMRI): the floor a regressor has to beat;
- ``selection``: how the checkpoint was chosen (``test`` is the paper's transductive choice).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...data import prepared
from ...data.atomic import atomic_path
from ...evaluate.protocol_spec import derangement
from ...evaluate.stats import bootstrap_ci

COLUMNS = ("dataset", "subject", "roi", "latent", "regressor", "methods", "scored", "mse", "ci_low", "ci_high", "n",
           "selection", "file")  # fmt: skip


def _unit(path: str) -> tuple[str, str, str]:
    """(dataset, subject, roi) of results/<d>/sub-<s>/roi-<r>/latents/<branch>-<key>-predictions.h5."""
    p = Path(path).parts
    i = next(k for k, part in enumerate(p) if part.startswith("sub-"))
    return p[i - 1], p[i][4:], p[i + 1][4:]


def per_image_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N, ...) predictions and truths -> (N,) MSE over each image's elements."""
    a, b = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    return ((a - b) ** 2).reshape(len(a), -1).mean(1)


def latent_rows(path: str, methods: list[str], seed: int, n_boot: int) -> list[dict]:
    """Table 3's three rows (predicted and its two controls) of one branch's predictions file."""
    d, s, r = _unit(path)
    with prepared.open_h5(path) as f:
        pred, true, mean = f["pred"][()], f["true"][()], f["train_mean"][()]
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    perm = derangement(len(true), seed)
    scored = {
        "predicted": per_image_mse(pred, true),
        "shuffled_pairs": per_image_mse(pred, true[perm]),
        "training_mean": per_image_mse(np.broadcast_to(mean, true.shape), true),
    }
    rows = []
    for label, values in scored.items():
        lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed)
        rows.append({"dataset": d, "subject": s, "roi": r, "latent": str(attrs["branch"]),
                     "regressor": str(attrs["regressor"]), "methods": " ".join(methods), "scored": label,
                     "mse": float(values.mean()), "ci_low": lo, "ci_high": hi, "n": len(values),
                     "selection": str(attrs["selection"]), "file": Path(path).name})  # fmt: skip
    return rows


def summarise_latentreg(predictions: dict[str, list[str]], output: str, seed: int = 0, n_boot: int = 1000) -> None:
    """Rule ``summarise_latentreg`` (module doc); ``predictions``: file -> the methods using it."""
    rows = [row for path in sorted(predictions) for row in latent_rows(path, predictions[path], seed, n_boot)]
    with atomic_path(output) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
