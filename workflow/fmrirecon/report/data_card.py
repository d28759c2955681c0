"""The report's data card: what each dataset really was, one row per subject × ROI.

Reads ``results/<dataset>/images.h5`` and the dataset's ``sub-<s>/roi-<roi>/data.h5`` files
(formats: :mod:`fmrirecon.data.prepared`). Only dataset *shapes*, attributes and the small index
arrays are read — never the images or the fMRI values — so a card of real NSD files (GBs) is quick.
Torch-free.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..data.atomic import atomic_path
from ..data.prepared import SPLITS, open_h5
from ..errors import InputError

#: The card's columns, in order (README "The HTML report").
COLUMNS = [
    "dataset", "format", "subject", "roi", "n_voxels",
    "train_samples", "train_images", "train_repeats",
    "test_images", "test_trials", "test_repeats_min", "test_repeats_median", "test_repeats_max",
    "imagery_images", "unlabeled_samples", "normalization",
    "images_train", "images_test", "images_unpaired", "images_gallery", "image_size",
    "sessions", "beta_version",
]  # fmt: skip


def _attr(f: h5py.File, key: str, default=None):
    if key not in f.attrs:
        return default
    v = f.attrs[key]
    if isinstance(v, bytes):
        return v.decode()
    return v.item() if hasattr(v, "item") else v


def _rows(f: h5py.File, name: str) -> int:
    """Rows of dataset ``name``, 0 when absent (its shape only)."""
    return int(f[name].shape[0]) if name in f else 0


def format_sessions(sessions) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``; non-integer session names are listed as they are."""
    if sessions is None or sessions == "":
        return ""
    if isinstance(sessions, (str, int)):
        sessions = [sessions]
    try:
        numbers = sorted({int(s) for s in sessions})
    except (TypeError, ValueError):
        return ", ".join(str(s) for s in sessions)
    parts, start = [], None
    for k, n in enumerate(numbers):
        if start is None:
            start = n
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def _source_info(path: Path, raw) -> dict:
    if raw in (None, ""):
        return {}
    try:
        info = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: attribute source_info is not JSON ({exc})") from exc
    return info if isinstance(info, dict) else {}


def image_summary(path: str | Path) -> dict:
    """Split sizes and image size of ``images.h5`` (``images_<split>``, ``image_size``)."""
    path = Path(path)
    with open_h5(path) as f:
        try:
            missing = [s for s in ("train", "test") if s not in f]
            if missing:
                raise InputError(f"{path}: expected groups {', '.join('/' + m for m in missing)}")
            out = {f"images_{s}": _rows(f, f"{s}/names") for s in SPLITS}
            size = _attr(f, "image_size")
            if size is None and "train/images" in f:
                h, w = f["train/images"].shape[1:3]
                size = int(h) if h == w else f"{h}x{w}"
            out["image_size"] = size if size is not None else ""
        except (KeyError, OSError) as exc:
            raise InputError(f"{path}: unreadable images file ({exc})") from exc
    return out


def _unit_of(path: Path, f: h5py.File) -> tuple[str, str]:
    """(subject, roi) from ``…/sub-<s>/roi-<roi>/data.h5``, else from the file's attributes."""
    m = re.fullmatch(r"sub-(.+)", path.parent.parent.name), re.fullmatch(r"roi-(.+)", path.parent.name)
    if m[0] and m[1]:
        return m[0].group(1), m[1].group(1)
    subject, roi = _attr(f, "subject"), _attr(f, "roi")
    if subject is None or roi is None:
        raise InputError(f"{path}: neither a sub-<s>/roi-<roi> path nor subject/roi attributes")
    return str(subject), str(roi)


def subject_summary(path: str | Path) -> dict:
    """One card row's subject × ROI columns from a prepared ``data.h5``."""
    path = Path(path)
    with open_h5(path) as f:
        try:
            for name in ("train/fmri", "train/image_index", "test/fmri", "test/trial_image_index"):
                if name not in f:
                    raise InputError(f"{path}: expected dataset /{name} in a prepared subject file")
            subject, roi = _unit_of(path, f)
            n_voxels = _attr(f, "n_voxels")
            _, counts = np.unique(f["test/trial_image_index"][()], return_counts=True)
            info = _source_info(path, _attr(f, "source_info"))
            row = {
                "subject": subject,
                "roi": roi,
                "n_voxels": int(n_voxels) if n_voxels is not None else int(f["train/fmri"].shape[1]),
                "train_samples": _rows(f, "train/fmri"),
                "train_images": len(np.unique(f["train/image_index"][()])),
                "train_repeats": str(_attr(f, "train_repeats", "single")),
                "test_images": _rows(f, "test/fmri"),
                "test_trials": _rows(f, "test/fmri_trials") if "test/fmri_trials" in f else int(counts.sum()),
                "test_repeats_min": int(counts.min()) if len(counts) else 0,
                "test_repeats_median": float(np.median(counts)) if len(counts) else 0.0,
                "test_repeats_max": int(counts.max()) if len(counts) else 0,
                "imagery_images": _rows(f, "imagery/fmri"),
                "unlabeled_samples": _rows(f, "unlabeled/fmri"),
                "normalization": str(_attr(f, "normalization", "")),
                "sessions": format_sessions(info.get("sessions")),
                "beta_version": str(info.get("beta_version") or ""),
            }
        except (KeyError, OSError) as exc:
            raise InputError(f"{path}: unreadable prepared subject file ({exc})") from exc
    return row


def data_card(images: str | Path, subjects: list[str | Path], dataset: str, data_format: str) -> pd.DataFrame:
    """The dataset's card: one row per prepared ``data.h5`` in ``subjects``, columns :data:`COLUMNS`."""
    common = image_summary(images)
    rows = [{"dataset": dataset, "format": data_format, **common, **subject_summary(p)} for p in subjects]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_data_card(images: str, subjects: list[str], dataset: str, data_format: str, output: str) -> None:
    """Rule ``data_card``: the card as CSV (the report renders it as a table)."""
    card = data_card(images, subjects, dataset, data_format)
    with atomic_path(output) as tmp:
        card.to_csv(tmp, index=False)
