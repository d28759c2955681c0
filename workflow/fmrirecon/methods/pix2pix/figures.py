"""The report's view of paper 004's classifier: per unit a figure (the metrics of every run with
their CIs, and the top-1 confusion of the filtered classifier), and one summary table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np

from ...data.atomic import atomic_path

CONTROLS = ("none", "shuffled_labels", "label_prior", "ridge_reference")
_ROWS = [(v, c) for v in ("filtered", "unfiltered") for c in CONTROLS]
_METRICS = ("keras_accuracy", "top1_in_set", "mAP")


def _run(results: dict, variant: str, control: str) -> dict:
    return results[f"{variant}-{control}"]


def confusion(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(L, L): row = a true label of a test image (each positive label counts once per image),
    column = the classifier's top-1 label; rows normalised to sum 1 (0 for labels never true)."""
    top = scores.argmax(1)
    out = np.zeros((labels.shape[1], labels.shape[1]))
    for i, row in enumerate(labels != 0):
        out[np.flatnonzero(row), top[i]] += 1
    sums = out.sum(1, keepdims=True)
    return np.divide(out, sums, out=np.zeros_like(out), where=sums > 0)


def plot_category_classifier(metrics: str, scores: str, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = json.loads(Path(metrics).read_text())
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
    colours = {"none": "#1f77b4", "shuffled_labels": "#888888", "label_prior": "#d62728", "ridge_reference": "#2ca02c"}
    for ax, metric in zip(axes[:3], _METRICS):
        for y, (variant, control) in enumerate(reversed(_ROWS)):
            r = _run(m["results"], variant, control)[metric]
            if None in (r["value"], r["ci_low"], r["ci_high"]):  # NaN in the JSON: no positives
                continue
            lo, hi = r["ci_low"], r["ci_high"]
            ax.plot([lo, hi], [y, y], color=colours[control], lw=1.5)
            ax.plot(r["value"], y, marker="o" if control == "none" else "D", color=colours[control],
                    mfc=colours[control] if control == "none" else "none")  # fmt: skip
        ax.set_yticks(range(len(_ROWS)), [f"{v}, {c}" for v, c in reversed(_ROWS)], fontsize=7)
        ax.set_title(metric + (" (the paper's 'accuracy')" if metric == "keras_accuracy" else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    with h5py.File(scores, "r") as f:
        s, y = f["scores/filtered-none"][()], f["labels/filtered"][()]
        names = f["label_names"][()].astype(str)
    c = confusion(s, y)
    im = axes[3].imshow(c, vmin=0, vmax=1, cmap="viridis")
    if len(names) <= 40:
        axes[3].set_xticks(range(len(names)), names, rotation=90, fontsize=5)
        axes[3].set_yticks(range(len(names)), names, fontsize=5)
    axes[3].set_title("filtered classifier: true label (row) vs top-1 (column)", fontsize=8)
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    fig.suptitle(f"category classifier (paper 004): {m['n_test']} test images, labels from {m['label_source']}, "
                 f"fMRI {m['layout']['layout']}; 95% bootstrap CIs over test images (mAP: over labels)", fontsize=9, x=0.01, ha="left")  # fmt: skip
    fig.tight_layout()
    with atomic_path(output) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def summarise_category_classifier(metrics: list[str], output: str) -> None:
    """One row per unit × label set × run × metric (value and CI) as CSV."""
    rows = []
    for path in sorted(metrics):
        parts = Path(path).parts
        i = next(k for k, p in enumerate(parts) if p.startswith("sub-"))
        m = json.loads(Path(path).read_text())
        for variant, control in _ROWS:
            for metric in _METRICS:
                r = _run(m["results"], variant, control)[metric]
                rows.append({"dataset": parts[i - 1], "subject": parts[i][4:], "roi": parts[i + 1][4:],
                             "labels": variant, "control": control, "metric": metric, "value": r["value"],
                             "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"],
                             "label_source": m["label_source"], "fmri_layout": m["layout"]["layout"],
                             "n_train": m["n_train"], "n_test": m["n_test"]})  # fmt: skip
    with atomic_path(output) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["dataset"])
        w.writeheader()
        w.writerows(rows)
