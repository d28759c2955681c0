"""Pieces of the Algonauts-2023 reader that read one kind of file or value: image file names
and PNGs, the seeded train/test split, the optional labels CSV and the pickled ROI mappings
(through :mod:`..safe_pickle`). :mod:`.algonauts2023` (the reader) builds on these; the rules of
the format are in its docstring.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..safe_pickle import load_pickled

_IMAGE_NAME = re.compile(r"train-(\d+)_nsd-(\d+)\.png")
_STEMS = (re.compile(r"(.*\d)[vd]"), re.compile(r"(.+?)-\d+"), re.compile(r"h(V\d+)"))


def _alnum(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", name)


def list_images(folder) -> np.ndarray:
    """(N,) int64 NSD id of each training image, in fMRI row order (``train-XXXX`` = row + 1)."""
    return _scan_images(folder)[0]


def _scan_images(folder) -> tuple[np.ndarray, list[str]]:
    """(NSD ids (N,), file names) in row order; InputError on a name or row that breaks the layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    rows: dict[int, tuple[int, str]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() != ".png":
            continue
        m = _IMAGE_NAME.fullmatch(p.name)
        if not m:
            raise InputError(f"{p}: image name does not match train-XXXX_nsd-YYYYY.png (XXXX = fMRI row + 1, "
                             "YYYYY = 0-based NSD id)")  # fmt: skip
        row, nsd = int(m.group(1)), int(m.group(2))
        if row in rows:
            raise InputError(f"{p}: row {row} is also {folder / rows[row][1]}")
        rows[row] = (nsd, p.name)
    if not rows:
        raise InputError(f"{folder}: no train-XXXX_nsd-YYYYY.png images")
    missing = sorted(set(range(1, len(rows) + 1)) - set(rows))
    if missing:
        raise InputError(f"{folder}: {len(rows)} images but no train-{missing[0]:04d}_nsd-*.png; rows must be "
                         f"1..{len(rows)} (row {max(rows)} is the largest)")  # fmt: skip
    ids = np.array([rows[r][0] for r in range(1, len(rows) + 1)], dtype=np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        twice = int(uniq[counts > 1][0])
        names = [rows[r][1] for r in sorted(rows) if rows[r][0] == twice]
        raise InputError(f"{folder}: NSD id {twice} names more than one image ({', '.join(names)})")
    return ids, [rows[r][1] for r in range(1, len(rows) + 1)]


def _rank(seed: int, nsd: int) -> bytes:
    return hashlib.sha256(f"{seed}:{nsd}".encode()).digest()


def split_ids(ids_by_subject: dict[str, np.ndarray], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test, train) NSD ids, each sorted, by the rule of the module docstring."""
    shared = set.intersection(*(set(v.tolist()) for v in ids_by_subject.values()))
    union = set().union(*(v.tolist() for v in ids_by_subject.values()))
    smallest = min(len(v) for v in ids_by_subject.values())
    n_test = min(math.floor(test_fraction * smallest + 0.5), len(shared))
    if n_test == 0:
        what = (f"the subjects {sorted(ids_by_subject)} share no image" if not shared else
                f"test_fraction {test_fraction} of {smallest} images rounds to 0")  # fmt: skip
        raise InputError(f"no test images: {what} (set options.split_subjects to one subject, or raise test_fraction)")
    test = sorted(sorted(shared, key=lambda i: _rank(seed, i))[:n_test])
    train = sorted(union - set(test))
    return np.array(test, dtype=np.int64), np.array(train, dtype=np.int64)


@dataclass
class ImageLabels:
    """COCO labels of images: ``nsd_id`` (N,), ``coco_id`` (N,), ``coco_split`` (N,) str,
    ``names`` (K,) category names, ``multi_hot`` (N, K) bool."""

    nsd_id: np.ndarray
    coco_id: np.ndarray
    coco_split: np.ndarray
    names: np.ndarray
    multi_hot: np.ndarray


def read_labels_csv(path, nsd_ids) -> ImageLabels:
    """Read a labels CSV: ``cocoId``, ``cocoSplit`` and one 0/1 column per COCO category.

    Rows are matched to ``nsd_ids`` (a subject's images in row order) by position (row i = image
    ``train-(i+1)``), or by an ``nsdId`` column when there is one. A leading unnamed index column
    (pandas' ``to_csv`` default) is skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels CSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            table = [row for row in csv.reader(fh) if row]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV file: {exc}") from exc
    if not table:
        raise InputError(f"{path}: empty labels CSV (expected a header cocoId,cocoSplit,<categories>)")
    header = [h.strip() for h in table[0]]
    skip = 1 if header[0] in ("", "Unnamed: 0") else 0
    missing = [c for c in ("cocoId", "cocoSplit") if c not in header]
    if missing:
        raise InputError(f"{path}: header lacks {missing} (expected cocoId,cocoSplit,<one 0/1 column per category>)")
    special = {"cocoId", "cocoSplit", "nsdId"}
    cats = [i for i in range(skip, len(header)) if header[i] not in special]
    if not cats:
        raise InputError(f"{path}: no category columns after cocoId,cocoSplit")
    col = {h: header.index(h) for h in special if h in header}
    nsd_ids = np.asarray(nsd_ids, dtype=np.int64)
    coco, split, hot, nsd = [], [], [], []
    for line, row in enumerate(table[1:], 2):
        if len(row) != len(header):
            raise InputError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        try:
            coco.append(int(row[col["cocoId"]]))
            values = [float(row[i]) for i in cats]
            if "nsdId" in col:
                nsd.append(int(row[col["nsdId"]]))
        except ValueError:
            raise InputError(f"{path}:{line}: cocoId/nsdId must be integers and category cells 0 or 1") from None
        if any(v not in (0.0, 1.0) for v in values):
            raise InputError(f"{path}:{line}: category cells must be 0 or 1 (multi-hot)")
        if not row[col["cocoSplit"]].strip():
            raise InputError(f"{path}:{line}: empty cocoSplit")
        split.append(row[col["cocoSplit"]].strip())
        hot.append(values)
    if "nsdId" in col:
        where = {n: i for i, n in enumerate(nsd)}
        absent = [int(n) for n in nsd_ids if int(n) not in where]
        if absent:
            raise InputError(f"{path}: no row for NSD id {absent[0]} ({len(absent)} images without labels)")
        order = [where[int(n)] for n in nsd_ids]
    elif len(hot) != len(nsd_ids):
        raise InputError(f"{path}: {len(hot)} rows for {len(nsd_ids)} images (row i labels image train-i; "
                         "add an nsdId column to label a subset)")  # fmt: skip
    else:
        order = list(range(len(hot)))
    return ImageLabels(nsd_id=nsd_ids, coco_id=np.array(coco, dtype=np.int64)[order],
                       coco_split=np.array(split, dtype=str)[order], names=np.array([header[i] for i in cats]),
                       multi_hot=np.array(hot, dtype=bool).reshape(len(hot), len(cats))[order])  # fmt: skip


def read_mapping(path) -> dict[int, str]:
    """A ``mapping_<atlas>.npy`` (pickled dict label → name), read by the restricted unpickler."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ROI mapping not found: {path} (atlases in {path.parent}: {_listing(path.parent)})")
    value = load_pickled(path)
    if not isinstance(value, dict) or not all(
            isinstance(k, int) and not isinstance(k, bool) and isinstance(v, str) for k, v in value.items()):
        raise InputError(f"{path}: expected a pickled dict of int label -> ROI name, got {type(value).__name__} "
                         f"{str(value)[:80]}")  # fmt: skip
    return value


def roi_definitions(mappings: dict[str, dict[int, str]]) -> dict[str, list[tuple[str, frozenset]]]:
    """ROI name → [(atlas, labels)] it is the union of ([] for ``all``), by the module's naming rules."""
    atomic: dict[str, list[tuple[str, int]]] = {}
    for atlas, mapping in mappings.items():
        for label, name in sorted(mapping.items()):
            if label > 0 and _alnum(name):
                atomic.setdefault(_alnum(name), []).append((atlas, label))
    defs: dict[str, list[tuple[str, frozenset]]] = {}
    for key, parts in atomic.items():
        defs[key] = [(atlas, frozenset([label])) for atlas, label in parts]
        if len({atlas for atlas, _ in parts}) > 1:
            for atlas, label in parts:
                defs.setdefault(_alnum(atlas) + key, []).append((atlas, frozenset([label])))
    stems: dict[str, dict[str, set]] = {}
    for atlas, mapping in mappings.items():
        for label, name in mapping.items():
            for rule in _STEMS:
                m = rule.fullmatch(name) if label > 0 else None
                if m and _alnum(m.group(1)):
                    stems.setdefault(_alnum(m.group(1)), {}).setdefault(atlas, set()).add(label)
                    break
    for key, parts in stems.items():
        if key not in defs:
            defs[key] = [(atlas, frozenset(labels)) for atlas, labels in parts.items()]
    for atlas, mapping in mappings.items():
        labels = frozenset(k for k in mapping if k > 0)
        if labels and _alnum(atlas) not in defs:
            defs[_alnum(atlas)] = [(atlas, labels)]
    defs.setdefault("all", [])
    return defs


def _listing(masks: Path) -> str:
    return ", ".join(_atlases_in(masks)) or "none"


def _atlases_in(masks: Path) -> list[str]:
    return sorted(p.name[len("mapping_"):-len(".npy")] for p in masks.glob("mapping_*.npy")) if masks.is_dir() else []


def _load_fmri(path: Path, n_images: int, image_folder: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"fMRI file not found: {path}")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array of numbers (corrupt or pickled?): {exc}") from None
    if x.ndim != 2 or x.dtype.kind != "f":
        raise InputError(f"{path}: fMRI has shape {x.shape} and dtype {x.dtype}, expected a float "
                         "(images, vertices) array")
    if x.shape[0] != n_images:
        raise InputError(f"{path}: {x.shape[0]} fMRI rows but {n_images} images in {image_folder} "
                         "(row i is image train-(i+1))")  # fmt: skip
    return x


def _load_labels(path: Path, n_vertices: int, fmri: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"ROI mask not found: {path} (atlases in {path.parent}: {_listing(path.parent)})")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array of labels: {exc}") from None
    fractional = x.dtype.kind == "f" and bool((~np.isfinite(x) | (x != np.round(x))).any())
    if x.ndim != 1 or x.dtype.kind not in "iuf" or fractional:
        raise InputError(f"{path}: expected (vertices,) integer ROI labels, got shape {x.shape} dtype {x.dtype}")
    if len(x) != n_vertices:
        raise InputError(f"{path}: {len(x)} vertices, but {fmri} has {n_vertices} columns")
    return x.astype(np.int64)
