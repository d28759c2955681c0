"""Report figures: reconstruction grids and metric bar charts with CIs and chance levels."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data import prepared  # noqa: E402
from ..data.atomic import atomic_path  # noqa: E402

log = logging.getLogger(__name__)


def plot_reconstructions(images: str, recons: list[str], n_images: int, output: str) -> None:
    """True test images on top, one row per method below (first sample when a method has several)."""
    stim = prepared.read_images_file(images, splits=("test",))
    rows = []
    for path in recons:
        rec = prepared.read_recon_file(path)
        imgs = rec["images"] if rec["images"].ndim == 4 else rec["images"][:, 0]
        rows.append((rec["attrs"].get("method", Path(path).parent.name), rec["image_index"], imgs))
    index = rows[0][1][:n_images] if rows else np.arange(min(n_images, len(stim.test)))
    n = len(index)
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.1 * n + 1.2, 1.15 * (len(rows) + 1)), squeeze=False)
    for j, row in enumerate(index):
        axes[0, j].imshow(stim.test.images[row])
    axes[0, 0].set_ylabel("seen", rotation=0, ha="right", va="center")
    for i, (name, idx, imgs) in enumerate(rows, start=1):
        lookup = {int(r): k for k, r in enumerate(idx)}
        for j, row in enumerate(index):
            if int(row) in lookup:
                axes[i, j].imshow(imgs[lookup[int(row)]])
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _read_rows(table: str) -> list[dict]:
    with open(table, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def plot_metrics(table: str, output: str) -> None:
    """One panel per (protocol, metric): methods and controls as bars with 95% CIs, chance dashed.

    Bars are grouped by ROI for the first subject of each dataset; the shuffled-id control of
    each method is drawn hatched beside it.
    """
    rows = [r for r in _read_rows(table) if r["value"] not in ("", "None")]
    panels = sorted({(r["protocol"], r["metric"]) for r in rows})
    if not panels:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "no metrics", ha="center")
        with atomic_path(output) as tmp:
            fig.savefig(tmp, format="png")
        return
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 2.8 * nrow), squeeze=False)
    for ax, (protocol, metric) in zip(axes.ravel(), panels):
        sel = [r for r in rows if r["protocol"] == protocol and r["metric"] == metric]
        first = sorted({(r["dataset"], r["subject"]) for r in sel})[0]
        sel = [r for r in sel if (r["dataset"], r["subject"]) == first]
        labels, vals, lo, hi, hatch = [], [], [], [], []
        for r in sorted(sel, key=lambda r: (r["roi"], r["method"], r["control"] == "shuffled_ids")):
            tag = f"{r['method']}\n{r['roi']}" + (" shuf" if r["control"] == "shuffled_ids" else "")
            labels.append(tag)
            v = _num(r["value"])
            vals.append(v)
            lo.append(v - _num(r["ci_low"]) if not math.isnan(_num(r["ci_low"])) else 0)
            hi.append(_num(r["ci_high"]) - v if not math.isnan(_num(r["ci_high"])) else 0)
            hatch.append("//" if r["control"] == "shuffled_ids" else "")
        x = np.arange(len(vals))
        bars = ax.bar(x, vals, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=2, color="#4c72b0")
        for b, h in zip(bars, hatch):
            if h:
                b.set_hatch(h)
                b.set_color("#bbbbbb")
        chance = [_num(r["chance"]) for r in sel if not math.isnan(_num(r["chance"]))]
        if chance:
            ax.axhline(chance[0], ls="--", color="k", lw=0.8)
        ax.set_xticks(x, labels, fontsize=6)
        ax.set_title(f"{protocol}: {metric}\n{first[0]} sub-{first[1]}", fontsize=8)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
