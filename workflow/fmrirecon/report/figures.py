"""Report figures: reconstruction grids and metric bar charts with CIs and chance levels."""

from __future__ import annotations

import csv
import logging
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data import prepared  # noqa: E402
from ..data.atomic import atomic_path  # noqa: E402
from ..methods import RESERVED_FOLDERS  # noqa: E402

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


def _metric_rows(rows: list[dict], protocol: str, metric: str) -> tuple[list[tuple], str]:
    """The rows of one panel: per (dataset, ROI, method) of each dataset's first subject, the
    method's value and CI and its shuffled-id control; and the subjects shown (for the title)."""
    sel = [r for r in rows if r["protocol"] == protocol and r["metric"] == metric]
    first = {}
    for r in sel:
        first[r["dataset"]] = min(first.get(r["dataset"], r["subject"]), r["subject"])
    sel = [r for r in sel if r["subject"] == first[r["dataset"]]]
    keyed: dict[tuple, dict] = {}
    for r in sel:
        keyed.setdefault((r["dataset"], r["roi"], r["method"]), {})[r["control"]] = r
    shown = ", ".join(f"{d} sub-{s}" for d, s in sorted(first.items()))
    return sorted(keyed.items()), shown


METHOD_COLOUR = "#4c72b0"
#: colours of the control families' rows (their ``Family.control`` labels, in sorted order)
CONTROL_COLOURS = ("#55a868", "#dd8452", "#8172b3", "#937860")


def _control_colours(controls: set[str]) -> dict[str, str]:
    """metrics.csv ``control`` label -> colour: methods (``none``) blue, each control family its own
    colour (``shuffled_ids`` is drawn as a hollow grey diamond instead)."""
    others = sorted(controls - {"none", "shuffled_ids"})
    return {"none": METHOD_COLOUR} | {c: CONTROL_COLOURS[i % len(CONTROL_COLOURS)] for i, c in enumerate(others)}


def plot_metrics(table: str, protocol: str, output: str) -> None:
    """One figure per protocol, one panel per metric: a row per method and ROI (each dataset's
    first subject), the value as a dot with its 95% CI, the same reconstructions scored against
    shuffled image ids as a hollow grey diamond, the chance level as a dashed line.

    Rows are labelled ``method · ROI`` (and the dataset when several are shown) on the shared
    vertical axis, so no label overprints another however many methods there are.
    """
    rows = [r for r in _read_rows(table) if r["value"] not in ("", "None") and r["protocol"] == protocol]
    metrics = sorted({r["metric"] for r in rows})
    if not metrics:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, f"no metrics for {protocol}", ha="center")
        with atomic_path(output) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        return
    keys = sorted({k for m in metrics for k, _ in _metric_rows(rows, protocol, m)[0]})
    several = len({d for d, _, _ in keys}) > 1
    labels = [(f"{d} · " if several else "") + f"{method} · {roi}" for d, roi, method in keys]
    pos = {k: len(keys) - 1 - i for i, k in enumerate(keys)}  # first key on top
    ncol = min(3, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    height = 0.6 + 0.22 * len(keys)
    colours = _control_colours({r["control"] for r in rows})
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 + 3.3 * ncol, height * nrow), squeeze=False, sharey=True)
    for ax, metric in zip(axes.ravel(), metrics):
        panel, shown = _metric_rows(rows, protocol, metric)
        for key, by_control in panel:
            y = pos[key]
            for control, r in by_control.items():
                if control == "shuffled_ids":
                    continue
                colour = colours[control]
                v, lo, hi = _num(r["value"]), _num(r["ci_low"]), _num(r["ci_high"])
                if not (math.isnan(lo) or math.isnan(hi)):
                    ax.plot([lo, hi], [y, y], color=colour, lw=1.2)
                ax.plot(v, y, "o", color=colour, ms=4.5)
            c = by_control.get("shuffled_ids")
            if c is not None:
                ax.plot(_num(c["value"]), y, "D", mfc="none", mec="#888888", ms=4.5)
        chance = [_num(r["chance"]) for r in rows if r["metric"] == metric and not math.isnan(_num(r["chance"]))]
        if chance:
            ax.axvline(chance[0], ls="--", color="k", lw=0.8)
        ax.set_title(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", lw=0.3, alpha=0.5)
        ax.set_ylim(-0.7, len(keys) - 0.3)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(keys)), labels[::-1], fontsize=7)
    handles = [
        plt.Line2D([], [], color=colour, marker="o", lw=1.2,
                   label="method (95% CI)" if control == "none" else f"control: {control}")
        for control, colour in colours.items()
    ] + [  # fmt: skip
        plt.Line2D([], [], color="#888888", marker="D", mfc="none", lw=0, label="shuffled-id control"),
        plt.Line2D([], [], color="k", ls="--", lw=0.8, label="chance"),
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=7, ncol=len(handles), frameon=False)
    fig.suptitle(f"{protocol} ({shown})", fontsize=9, x=0.01, ha="left")
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97 if nrow > 1 else 0.93))
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


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


_HASH = re.compile(r"-[0-9a-f]{12}$")  # the settings hash of a shared stage's file name
_SKIP_COLUMNS = ("epoch", "step", "lr", "wall_s")


def training_stage(path: str) -> tuple[str, str]:
    """(stage, unit) of a loss log, for titles and legends.

    ``results/<d>/sub-<s>/roi-<r>/<folder>/losses.tsv`` -> (``<folder>``, ``<d> sub-<s> <r>``);
    ``…/<folder>/<stage>-<hash>.losses.tsv`` -> (``<folder>: <stage>``, unit), or ``shared:
    <stage>`` when the folder is a shared one (``models``); a dataset-level
    ``results/<d>/models/<stage>-<hash>.losses.tsv`` -> (``shared: <stage>``, ``<d>``), and a
    pretraining pool's ``results/pools/<p>/models/…`` -> (``shared: <stage>``, ``pool <p>``).
    """
    parts = Path(path).parts
    name = Path(path).name
    stage = _HASH.sub("", name[: -len(".losses.tsv")]) if name.endswith(".losses.tsv") else ""
    subj = next((k for k, q in enumerate(parts) if q.startswith("sub-")), None)
    if subj is None:
        top = parts.index("results") + 1 if "results" in parts else 0
        if parts[top] == "pools" and len(parts) > top + 1:  # results/pools/<pool>/models/...
            return f"shared: {stage or parts[-2]}", f"pool {parts[top + 1]}"
        return f"shared: {stage or parts[-2]}", parts[top]
    unit = f"{parts[subj - 1]} {parts[subj]} {parts[subj + 1][4:]}"
    folder = parts[subj + 2]
    if stage and folder in RESERVED_FOLDERS:  # a stage shared by the subject's methods
        return f"shared: {stage}", unit
    return (f"{folder}: {stage}" if stage else folder), unit


def plot_training_curves(logs: list[str], output: str, family: str = "") -> None:
    """One family's training losses: a panel per stage (a method's folder, or a stage shared by
    its methods), the total loss of every (dataset, subject, ROI) it trained for as a solid line
    against optimiser steps; with a single unit its weighted loss terms are drawn dashed too. A
    log of one epoch is a single point, marked and labelled as such."""
    stages: dict[str, list[tuple[str, dict]]] = {}
    for path in sorted(logs):
        stage, unit = training_stage(path)
        stages.setdefault(stage, []).append((unit, _read_tsv(path)))
    ncol = min(4, max(1, len(stages)))
    nrow = max(1, math.ceil(len(stages) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.5 * nrow), squeeze=False)
    for ax, (stage, runs) in zip(axes.ravel(), sorted(stages.items())):
        single_epoch = True
        for unit, cols in runs:
            x = cols.get("step") or cols.get("epoch", [])
            single_epoch &= len(x) <= 1
            terms = [k for k in cols if k not in _SKIP_COLUMNS and not k.endswith("/lr")]
            # the total loss; a log of several optimisers (a GAN) or runs has "<name>/loss" instead
            mains = ["loss"] if "loss" in cols else [k for k in cols if k.endswith("/loss")]
            for key in mains:
                name = key if len(runs) == 1 else (unit if key == "loss" else f"{unit} {key}")
                ax.plot(x, cols[key], marker=".", lw=1.4, label=name)
            if len(runs) == 1:
                for key in terms:
                    if key not in mains:
                        ax.plot(x, cols[key], marker=".", lw=0.8, ls="--", label=key)
        title = stage + (" (one epoch logged)" if single_epoch else "")
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("optimiser step", fontsize=6)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, title=runs[0][0] if len(runs) == 1 else None, title_fontsize=5)
    if family:
        fig.suptitle(f"training losses: family plugin {family}", fontsize=9, x=0.01, ha="left")
    _save_panels(fig, axes, len(stages), output)


def plot_method_groups(table: str, groups: dict[str, list[str]], rois: dict[str, list[str]], output: str) -> None:
    """Ablation and ROI charts for trained method families.

    For each family: one row of panels. ``groups[family]`` are its methods (full method first);
    the left panels compare them on their common ROI, the right ones compare the ROIs
    ``rois[family]`` of the full method. A row per method (or ROI): each subject's score as a small
    dot and their mean as a large one, the shuffled-id control as hollow diamonds on the same row,
    the chance level dashed.
    """
    rows = [r for r in _read_rows(table) if r["value"] not in ("", "None")]
    panels = []
    for family, methods in groups.items():
        sel = [r for r in rows if r["method"] in methods]
        for protocol, metric in sorted({(r["protocol"], r["metric"]) for r in sel}):
            panels.append((family, "ablation", protocol, metric, methods))
            if len(rois.get(family, [])) > 1:
                panels.append((family, "roi", protocol, metric, methods[:1]))
    ncol = 4
    nrow = max(1, math.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 2.6 * nrow), squeeze=False)
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
        for i, (method, roi) in enumerate(keys):
            y = len(keys) - 1 - i  # first (the full method, or the first ROI) on top
            for control, style in (("none", dict(marker="o", color=METHOD_COLOUR)),
                                   ("shuffled_ids", dict(marker="D", mfc="none", mec="#888888", color="#888888"))):  # fmt: skip
                vals = [_num(r["value"]) for r in sel if r["method"] == method and r["roi"] == roi and r["control"] == control]
                if not vals:
                    continue
                ax.plot(vals, [y] * len(vals), ls="none", ms=3, alpha=0.6, **style)  # one per subject
                ax.plot([np.mean(vals)], [y], ls="none", ms=7, **style)  # their mean
        chance = [_num(r["chance"]) for r in sel if not math.isnan(_num(r["chance"]))]
        if chance:
            ax.axvline(chance[0], ls="--", color="k", lw=0.8)
        names = [method if kind == "ablation" else roi for method, roi in keys]
        ax.set_yticks(range(len(keys)), names[::-1], fontsize=7)
        ax.set_ylim(-0.7, len(keys) - 0.3)
        ax.set_title(f"{title}\n{protocol}: {metric}", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
        ax.grid(axis="x", lw=0.3, alpha=0.5)
    handles = [
        plt.Line2D([], [], color=METHOD_COLOUR, marker="o", ls="none", label="method (large: mean of subjects)"),
        plt.Line2D([], [], color="#888888", marker="D", mfc="none", ls="none", label="shuffled-id control"),
        plt.Line2D([], [], color="k", ls="--", lw=0.8, label="chance"),
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=7, ncol=3, frameon=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / (2.6 * nrow)))
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _common_roi(rows: list[dict], methods: list[str]) -> str:
    per = [{r["roi"] for r in rows if r["method"] == m} for m in methods]
    per = [s for s in per if s]
    common = set.intersection(*per) if per else set()
    return sorted(common)[0] if common else (sorted({r["roi"] for r in rows}) or [""])[0]
