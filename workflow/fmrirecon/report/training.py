"""The report's training table: throughput, settings, encoder accuracy, F-attention decoding quality."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..data.atomic import atomic_path
from ..methods import RESERVED_FOLDERS


def _unit(path: str) -> tuple[str, str, str]:
    """(dataset, subject, roi) from results/<dataset>/sub-<s>/roi-<r>/... ."""
    parts = Path(path).parts
    i = next(k for k, p in enumerate(parts) if p.startswith("sub-"))
    return parts[i - 1], parts[i][4:], parts[i + 1][4:]


def _stage_of(path: str) -> tuple[str, str, str, str]:
    """(dataset, subject, roi, stage) of a training summary ``…/<stage>.train.json``."""
    parts = Path(path).parts
    stage = Path(path).name[: -len(".train.json")]
    if any(p.startswith("sub-") for p in parts):
        d, s, roi = _unit(path)
        folder = parts[parts.index(f"sub-{s}") + 2]  # a method's folder, or a shared stage's
        return d, s, roi, stage if folder in RESERVED_FOLDERS else f"{folder}/{stage}"
    top = parts.index("results") + 1 if "results" in parts else 0
    if parts[top] == "pools" and len(parts) > top + 1:  # a pretraining pool's stage: results/pools/<p>/
        return f"pool {parts[top + 1]}", "", "", stage
    return parts[top], "", "", stage


def _flatten(settings: dict, prefix: str = "") -> list[tuple[str, object]]:
    """``{"train": {"lr": 1e-3}}`` -> ``[("train.lr", 0.001)]`` (lists as JSON text)."""
    out = []
    for key, value in sorted(settings.items()):
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, name + ".")
        else:
            out.append((name, json.dumps(value) if isinstance(value, (list, tuple)) else value))
    return out


def training_report(summaries: list[str], summary: str, accuracy: list[str] = (), attention: list[str] = (),
                    labels: list[str] = ()) -> None:  # fmt: skip
    """Tabulate each training stage's throughput and peak memory, its resolved settings, and the
    stage-level checks the families provide (encoder test accuracy, decoded F-attention IoU).
    The loss curves are :func:`.figures.plot_training_curves`, one figure per family."""
    rows = []
    for path in summaries:
        with open(path) as fh:
            info = json.load(fh)
        d, s, roi, stage = _stage_of(path)
        for key, value in sorted(info.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"dataset": d, "subject": s, "roi": roi, "stage": stage,
                             "quantity": key.replace("_", " "), "value": value})  # fmt: skip
        for key, value in _flatten(info.get("settings", {})):  # the resolved settings it trained with
            rows.append({"dataset": d, "subject": s, "roi": roi, "stage": stage,
                         "quantity": f"setting {key}", "value": value})  # fmt: skip
    for path in accuracy:
        with open(path) as fh:
            table = list(csv.DictReader(fh, delimiter="\t"))
        r = np.array([float(t["r"]) for t in table])
        rn = np.array([float(t["r_normalised"]) for t in table])
        d, s, roi = _unit(path)
        rows.append({"dataset": d, "subject": s, "roi": roi, "stage": "encoder",
                     "quantity": "median test r (voxels)", "value": float(np.median(r))})  # fmt: skip
        if np.isfinite(rn).any():
            rows.append({"dataset": d, "subject": s, "roi": roi, "stage": "encoder",
                         "quantity": "median test r / noise ceiling", "value": float(np.nanmedian(rn))})  # fmt: skip
    for path in attention:
        with open(path) as fh:
            info = json.load(fh)
        d, s, roi = _unit(path)
        for key in ("iou_vs_truth", "iou_vs_truth_shuffled", "iou_vs_label_maps", "iou_vs_label_maps_shuffled"):
            if key in info:
                rows.append({"dataset": d, "subject": s, "roi": roi, "stage": "attention_decoder",
                             "quantity": f"test {key.replace('_', ' ')}", "value": info[key]})  # fmt: skip
    for path in labels:
        with open(path) as fh:
            info = json.load(fh)
        d = Path(path).parts[-3]
        for split in ("train", "test"):
            for key in ("iou_vs_truth", "iou_vs_truth_saliency", "foreground_fraction"):
                if key in info.get(split, {}):
                    rows.append({"dataset": d, "subject": "", "roi": "", "stage": "label_maps",
                                 "quantity": f"{split} {key.replace('_', ' ')}", "value": info[split][key]})  # fmt: skip
    with atomic_path(summary) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["dataset", "subject", "roi", "stage", "quantity", "value"])
        writer.writeheader()
        writer.writerows(rows)
