"""Paper 004's label filters for the multi-label category classifier.

The paper (§III.B) drops labels whose objects are too small to matter, using COCO's bounding
boxes; their code (``A-Ariyanuchitkul/G20_ML2023``, ``project_classification.ipynb`` at HEAD
a66db7b) does it in two steps:

1. **Box filter** (cells 15 and 25, ``get_bounding_boxes`` with ``area_threshold = 50*50``): for
   each image, every COCO instance whose box, truncated to integers, has ``w·h ≤ 2500`` px²
   (in the pixels of the *original* COCO image, not NSD's 425-px crop) zeroes its category in that
   image's label row. One small instance is enough (*any-instance quirk*): an image with a large
   and a small person loses "person". It is an area rule, not "both sides ≤ 50" (a 10 × 200 box
   counts as small). Crowd annotations count like any other; stuff categories have no instances
   and are never zeroed.
2. **Count filter** (cells 27–33, ``count_threshold = 2000``): labels that occur in 2000 or more
   *training* rows (counted after the box filter) are zeroed in every split. The notebook's heading
   is "Remove labels which appear often" and it zeroes the columns with ``count >= 2000`` — it
   drops frequent labels rather than keeping them; ``drop="rare"`` gives the opposite reading
   (keep only labels with ≥ threshold occurrences). The threshold is an absolute count over their
   ~19,500 training rows (two subjects): scale it for smaller datasets.

Objects come in the format ``images.h5`` stores (:mod:`fmrirecon.data.readers.coco`): per image a
list of ``{"category": name, "bbox": [x, y, w, h], ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: their area_threshold (a box of at most 50 × 50 = 2500 px²) and count_threshold
MAX_BOX_AREA = 50 * 50
COUNT_THRESHOLD = 2000


def small_categories(objects: Sequence[dict], max_area: float = MAX_BOX_AREA) -> set[str]:
    """Categories of one image with at least one instance of ``int(w)·int(h) ≤ max_area``."""
    small = set()
    for obj in objects:
        w, h = (int(v) for v in obj["bbox"][2:4])
        if w * h <= max_area:
            small.add(str(obj["category"]))
    return small


def multi_hot(objects: Sequence[Sequence[dict]], label_names: Sequence[str]) -> np.ndarray:
    """(N, L) int32 multi-hot labels of the images' instance categories (names outside
    ``label_names`` are ignored)."""
    column = {name: j for j, name in enumerate(label_names)}
    out = np.zeros((len(objects), len(label_names)), np.int32)
    for i, objs in enumerate(objects):
        for obj in objs:
            j = column.get(str(obj["category"]))
            if j is not None:
                out[i, j] = 1
    return out


def box_filter(labels: np.ndarray, label_names: Sequence[str], objects: Sequence[Sequence[dict]],
               max_area: float = MAX_BOX_AREA) -> tuple[np.ndarray, int]:  # fmt: skip
    """Zero, per image, the labels that have a small instance in it (rule 1 of the module doc).

    Args:
        labels: (N, L) multi-hot rows; not modified.
        label_names: the L column names (COCO category names).
        objects: per image its instances, in ``labels``' row order.
        max_area: an instance with ``int(w)·int(h) ≤ max_area`` is small.

    Returns:
        The filtered copy and the number of ones it zeroed. A small instance of a category that is
        not a column is ignored.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(label_names) or len(labels) != len(objects):
        raise ValueError(f"box filter: labels {labels.shape} need {len(objects)} rows (one per image's objects) "
                         f"and {len(label_names)} columns (one per label name)")  # fmt: skip
    column = {name: j for j, name in enumerate(label_names)}
    out = labels.copy()
    for i, objs in enumerate(objects):
        cols = [column[c] for c in small_categories(objs, max_area) if c in column]
        out[i, cols] = 0
    return out, int((labels != 0).sum() - (out != 0).sum())


def count_filter(train_labels: np.ndarray, threshold: int = COUNT_THRESHOLD, drop: str = "frequent") -> np.ndarray:
    """(L,) bool: the labels to keep after the count rule (rule 2 of the module doc).

    ``drop="frequent"`` (their code): drop labels with ≥ ``threshold`` positive training rows;
    ``drop="rare"``: drop labels with fewer.
    """
    counts = (np.asarray(train_labels) != 0).sum(0)
    if drop == "frequent":
        return counts < threshold
    if drop == "rare":
        return counts >= threshold
    raise ValueError(f"count filter: drop {drop!r}, expected 'frequent' or 'rare'")


def zero_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` (N, L) with the columns not in ``keep`` (L,) set to 0 (their code keeps
    all 133 columns and zeroes the dropped ones, so the network still has 133 outputs)."""
    out = np.asarray(labels).copy()
    out[:, ~np.asarray(keep, bool)] = 0
    return out
