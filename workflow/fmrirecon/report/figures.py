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


def _save_panels(fig, axes, n_used: int, output: str, dpi: int = 80) -> None:
    """Hide the unused panels of a grid, lay it out and write the PNG atomically."""
    for ax in axes.ravel()[n_used:]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
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
    _save_panels(fig, axes, len(panels), output)


def plot_label_map_file(images: str, maps: str, summary: str, output: str) -> None:
    """Rule ``plot_label_maps``: :func:`plot_label_maps` of a dataset's test label maps."""
    import json

    import h5py

    stim = prepared.read_images_file(images, splits=("train", "test"))
    with h5py.File(maps, "r") as f:
        test_maps = f["test/maps"][()]
    info = json.loads(Path(summary).read_text())["test"]
    plot_label_maps(stim.test.images, test_maps, stim.test.foreground, output, info)


def plot_label_maps(images: np.ndarray, maps: np.ndarray, truth, output: str, summary: dict, n: int = 10) -> None:
    """Test images, their F-attention label maps and (simulated data) the true foreground."""
    n = min(n, len(images))
    rows = 3 if truth is not None else 2
    fig, axes = plt.subplots(rows, n, figsize=(1.05 * n + 1.2, 1.15 * rows), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j])
        axes[1, j].imshow(maps[j], cmap="gray", vmin=0, vmax=1)
        if truth is not None:
            axes[2, j].imshow(truth[j], cmap="gray", vmin=0, vmax=1)
    names = ["image", "label map", "true fg"]
    for i in range(rows):
        axes[i, 0].set_ylabel(names[i], rotation=0, ha="right", va="center", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    title = f"F-attention label maps ({summary.get('method')})"
    if "iou_vs_truth" in summary:
        title += f": mean IoU vs true foreground {summary['iou_vs_truth']:.2f}"
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _read_tsv(path: str) -> dict[str, list[float]]:
    with open(path) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    cols: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            cols.setdefault(k, []).append(_num(v))
    return cols


def plot_training_curves(logs: list[str], output: str) -> None:
    """Per-epoch losses of every training job (one panel per job, every loss term a line)."""
    logs = sorted(logs)
    ncol = 4
    nrow = max(1, math.ceil(len(logs) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.3 * nrow), squeeze=False)
    for ax, path in zip(axes.ravel(), logs):
        cols = _read_tsv(path)
        epoch = cols.get("epoch", [])
        for key, vals in cols.items():
            if key in ("epoch", "step", "lr", "wall_s") or key.endswith("/lr"):
                continue
            ax.plot(epoch, vals, marker=".", lw=1, label=key, ls="-" if key == "loss" else "--")
        parts = Path(path).parts
        ax.set_title("/".join(parts[-4:-1]) if len(parts) >= 4 else path, fontsize=6)
        ax.set_xlabel("epoch", fontsize=6)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    _save_panels(fig, axes, len(logs), output)


def plot_method_groups(table: str, groups: dict[str, list[str]], rois: dict[str, list[str]], output: str) -> None:
    """Ablation and ROI charts for trained method families.

    For each family: one row of panels. ``groups[family]`` are its methods (full method first);
    the left panels compare them on their common ROI, the right ones compare the ROIs
    ``rois[family]`` of the full method. Every bar has its shuffled-id control (hatched) beside
    it and the chance level dashed; one bar per subject (mean over subjects shown as the bar,
    subjects as dots).
    """
    rows = [r for r in _read_rows(table) if r["value"] not in ("", "None")]
    panels = []
    for family, methods in groups.items():
        sel = [r for r in rows if r["method"] in methods]
        for protocol, metric in sorted({(r["protocol"], r["metric"]) for r in sel}):
            panels.append((family, "ablation", protocol, metric, methods))
            if len(rois.get(family, [])) > 1:
                panels.append((family, "roi", protocol, metric, methods[:1]))
    if not panels:
        panels = []
    ncol = 4
    nrow = max(1, math.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.9 * nrow), squeeze=False)
    for ax, (family, kind, protocol, metric, methods) in zip(axes.ravel(), panels):
        sel = [r for r in rows if r["protocol"] == protocol and r["metric"] == metric and r["method"] in methods]
        if kind == "ablation":
            common = _common_roi(sel, methods)
            sel = [r for r in sel if r["roi"] == common]
            keys = [(m, common) for m in methods]
            title = f"{family} ablations ({common})"
        else:
            keys = [(methods[0], roi) for roi in rois[family]]
            title = f"{methods[0]} by ROI"
        labels, x = [], 0
        for method, roi in keys:
            for control in ("none", "shuffled_ids"):
                vals = [_num(r["value"]) for r in sel if r["method"] == method and r["roi"] == roi and r["control"] == control]
                if not vals:
                    continue
                ax.bar(x, np.mean(vals), color="#bbbbbb" if control != "none" else "#4c72b0",
                       hatch="//" if control != "none" else "")  # fmt: skip
                ax.plot([x] * len(vals), vals, "k.", ms=3)
                labels.append((x, (method if kind == "ablation" else roi) + (" shuf" if control != "none" else "")))
                x += 1
            x += 0.4
        chance = [_num(r["chance"]) for r in sel if not math.isnan(_num(r["chance"]))]
        if chance:
            ax.axhline(chance[0], ls="--", color="k", lw=0.8)
        ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=6, rotation=30, ha="right")
        ax.set_title(f"{title}\n{protocol}: {metric}", fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
    _save_panels(fig, axes, len(panels), output)


def _common_roi(rows: list[dict], methods: list[str]) -> str:
    per = [{r["roi"] for r in rows if r["method"] == m} for m in methods]
    per = [s for s in per if s]
    common = set.intersection(*per) if per else set()
    return sorted(common)[0] if common else (sorted({r["roi"] for r in rows}) or [""])[0]
