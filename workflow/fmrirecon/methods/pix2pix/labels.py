"""Paper 004's inputs from the prepared files: the fMRI as hemisphere channels and the images'
multi-label categories with their boxes.

**Labels** (:func:`image_labels`), per image a list of instances ``{"category", "bbox"}``:

- from ``images.h5`` ``/<split>/objects`` when the reader stored them (NSD with the dataset option
  ``coco_annotations``; the simulated NSD): COCO categories, boxes in the original COCO pixels —
  the paper's setting;
- else from the simulation truth (the embedded GOD-like default), a documented substitution:
  each image shows one object whose category is a (shape, hue, pattern) triple; its three
  attributes are the labels (``shape:<s>``, ``hue:<h>``, ``pattern:<p>``), so a test image — of a
  category never trained on, as in GOD — still has labels seen in training. Their box is the
  bounding box of the true foreground mask in the image's pixels (``image_size``).

**fMRI channels** (:func:`fmri_channels`): surface data (the Algonauts-2023 reader: ``voxels/xyz``
holds hemisphere 0/1, vertex, NaN) is split into left and right hemisphere, as their code stacks
them; volumetric data (GOD, NSD volumes) is one channel. Each channel is zero-padded to a common
length and min–max scaled with the *training* array's minimum and maximum (their code scaled each
split by its own; the test fMRI's range is not used here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from ...data import prepared
from ...errors import InputError
from ...models.category_classifier import pad_vertices


@dataclass
class LabelSet:
    """Label names and, per split, each image's instances (rows of images.h5 ``/<split>``)."""

    names: list[str]
    objects: dict[str, list[list[dict]]]
    source: str  # "objects" (images.h5) or "simulation truth (attributes)"


def _bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def _truth_objects(truth: str, stim, splits: Sequence[str]) -> dict[str, list[list[dict]]]:
    with h5py.File(truth, "r") as f:
        if "categories" not in f:
            raise InputError(f"{truth}: expected group /categories (shape, hue, pattern) in the simulation truth")
        cats = f["categories"]
        attrs = list(zip(cats["shape"][()].astype(str), cats["hue"][()].tolist(), cats["pattern"][()].astype(str)))
        by_name = {}
        for split in splits:
            g = f[f"images/{split}"]
            by_name.update(zip(g["names"][()].astype(str), g["category"][()].tolist()))
    out = {}
    for split in splits:
        part = getattr(stim, split)
        if part.foreground is None:
            raise InputError(f"{stim.path}: /{split}/foreground is missing; simulated labels need the true masks")
        rows = []
        for name, mask in zip(part.names, part.foreground):
            if name not in by_name:
                raise InputError(f"{truth}: image {name!r} of {stim.path} /{split} is not in the simulation truth")
            shape, hue, pattern = attrs[by_name[name]]
            box = _bbox(mask)
            rows.append([{"category": c, "bbox": box} for c in (f"shape:{shape}", f"hue:{hue}", f"pattern:{pattern}")])
        out[split] = rows
    return out


def image_labels(images: str, truth: str = "", splits: Sequence[str] = ("train", "test")) -> LabelSet:
    """The images' instances per split and the label names (sorted; every category of the splits)."""
    stim = prepared.read_images_file(images, splits=tuple(splits))
    parts = {s: getattr(stim, s) for s in splits}
    if all(p.objects is not None for p in parts.values()):
        objects, source = {s: p.objects for s, p in parts.items()}, "objects"
    elif truth:
        objects, source = _truth_objects(truth, stim, splits), "simulation truth (attributes)"
    else:
        raise InputError(f"{images}: no /train/objects and no simulation truth: paper 004's classifier needs "
                         "object labels (NSD: set the dataset option coco_annotations)")  # fmt: skip
    names = sorted({str(o["category"]) for rows in objects.values() for objs in rows for o in objs})
    if not names:
        raise InputError(f"{images}: the images have no object labels")
    return LabelSet(names, objects, source)


# -- the fMRI ------------------------------------------------------------------------------------
def hemisphere_columns(xyz: np.ndarray) -> list[np.ndarray] | None:
    """Column indices of the left and right hemisphere for surface data (``xyz`` = hemisphere
    0/1, vertex, NaN), else None (volumetric coordinates)."""
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or not len(xyz) or not np.isnan(xyz[:, 2]).all():
        return None
    hemi = xyz[:, 0]
    if not np.isin(hemi, (0.0, 1.0)).all():
        return None
    cols = [np.flatnonzero(hemi == 0), np.flatnonzero(hemi == 1)]
    return [c for c in cols if len(c)]  # an ROI of one hemisphere is one channel


def fmri_channels(d, splits: Sequence[str] = ("train/fmri", "test/fmri"), length: int | None = None,
                  layout: str = "auto") -> tuple[dict[str, np.ndarray], dict]:  # fmt: skip
    """``{key: (N, C, length) float32}`` for the prepared subject ``d`` and a description.

    ``layout``: ``auto`` (hemispheres when the voxels are surface vertices, else one channel),
    ``hemispheres`` (an error for volumetric data) or ``single``. ``length``: the padded length
    (default: the longest channel). Min–max scaling uses the training fMRI's range per channel.
    """
    cols = hemisphere_columns(d["voxels/xyz"]) if layout in ("auto", "hemispheres") else None
    if layout == "hemispheres" and cols is None:
        raise InputError("pix2pix/classifier layout 'hemispheres': the prepared voxels are not surface vertices "
                         "(voxels/xyz is not hemisphere, vertex, NaN)")  # fmt: skip
    n_vox = d["train/fmri"].shape[1]
    cols = cols or [np.arange(n_vox)]
    longest = max(len(c) for c in cols)
    length = int(length or longest)
    if longest > length:
        raise InputError(f"{longest} voxels per channel do not fit the padded length {length}")
    train = np.asarray(d["train/fmri"], np.float32)
    ranges = [(float(train[:, c].min()), float(train[:, c].max())) for c in cols]
    out = {}
    for key in splits:
        x = np.asarray(d[key], np.float32)
        chans = []
        for c, (lo, hi) in zip(cols, ranges):
            scaled = (x[:, c] - lo) / (hi - lo) if hi > lo else np.zeros_like(x[:, c])
            chans.append(pad_vertices(scaled, length))
        out[key] = np.stack(chans, axis=1)
    two = layout != "single" and hemisphere_columns(d["voxels/xyz"]) is not None
    info = {"channels": len(cols), "layout": "hemispheres" if two else "single", "length": length,
            "voxels_per_channel": [len(c) for c in cols], "scaling": "min-max with the training fMRI's range"}  # fmt: skip
    return out, info
