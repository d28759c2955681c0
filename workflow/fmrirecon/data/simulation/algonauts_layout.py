"""Write arrays in the published layout of the Algonauts 2023 challenge data (NSD derivative).

A pure writer: it takes arrays and writes them as the challenge's ``prepare_data`` script did
(``subjNN/...`` under ``root``); it checks nothing and simulates nothing, so tests can also write
broken trees. Layout (``NN`` = subject number, rows of the fMRI = images in ``nsd_ids`` order)::

    subjNN/training_split/training_fmri/{lh,rh}_training_fmri.npy    (images, vertices)
    subjNN/training_split/training_images/train-XXXX_nsd-YYYYY.png  XXXX = row + 1, YYYYY = 0-based NSD id
    subjNN/test_split/test_images/test-XXXX_nsd-YYYYY.png           optional (no public fMRI)
    subjNN/roi_masks/{lh,rh}.<atlas>_challenge_space.npy            int label per challenge vertex
    subjNN/roi_masks/{lh,rh}.<atlas>_fsaverage_space.npy            optional: the same on fsaverage
    subjNN/roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy       optional: 1 at challenge vertices
    subjNN/roi_masks/mapping_<atlas>.npy                            pickled dict label int -> name
    image_infos/subjNN_infos_train.csv                              optional labels (paper 004's name)

``mapping_<atlas>.npy`` is ``np.save`` of a dict: a ``.npy`` v1.0 header of a 0-d object array and
a pickle of that array. With ``mapping_format="published"`` (default) the bytes are those of the
released files, written by numpy 1.x (pickle protocol 3, ``numpy.core.multiarray``), whatever numpy
is installed; ``"np.save"`` writes what the installed numpy's ``np.save`` writes.
"""

from __future__ import annotations

import csv
import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class AlgonautsSubject:
    """One subject's arrays.

    Attributes:
        nsd_ids: (N,) int, 0-based NSD (73k) id of each training image, in fMRI row order.
        images: (N, H, W, 3) uint8 training images.
        lh_fmri: (N, V_lh) fMRI of the left hemisphere (the published files are float32).
        rh_fmri: (N, V_rh) fMRI of the right hemisphere.
        roi_labels: atlas name (``prf-visualrois``, ...) → (lh (V_lh,), rh (V_rh,)) int labels of
            the challenge-space vertices.
        fsaverage_vertices: optional (lh, rh) fsaverage vertex index of each challenge vertex;
            with it the ``*_fsaverage_space.npy`` files are written (``fsaverage_size`` long).
        fsaverage_size: vertices per fsaverage hemisphere (163842 for the real fsaverage).
        test_nsd_ids / test_images: optional challenge test images (no fMRI is written for them).
        labels: optional (coco_ids (N,), coco_splits (N,), multi_hot (N, K)) rows of the labels CSV.
    """

    nsd_ids: Sequence[int]
    images: np.ndarray
    lh_fmri: np.ndarray
    rh_fmri: np.ndarray
    roi_labels: Mapping[str, tuple[np.ndarray, np.ndarray]]
    fsaverage_vertices: tuple[np.ndarray, np.ndarray] | None = None
    fsaverage_size: int = 163842
    test_nsd_ids: Sequence[int] | None = None
    test_images: np.ndarray | None = None
    labels: tuple[Sequence[int], Sequence[str], np.ndarray] | None = None


def mapping_bytes(mapping: Mapping, mapping_format: str = "published") -> bytes:
    """The bytes of ``mapping_<atlas>.npy`` for ``mapping`` (see the module docstring)."""
    array = np.empty((), dtype=object)
    array[()] = dict(mapping)
    if mapping_format not in ("published", "np.save"):
        raise ValueError(f"mapping_format {mapping_format!r} is not 'published' or 'np.save'")
    # a 1.0 header, then the array pickled: protocol 4 as today's np.save writes it, or protocol 3
    # with numpy < 2's module names as the challenge's files have (GLOBAL opcodes are text lines)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    if mapping_format == "np.save":
        return buf.getvalue() + pickle.dumps(array, protocol=4)
    body = pickle.dumps(array, protocol=3)
    return buf.getvalue() + body.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _save(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array), allow_pickle=False)


def _save_pngs(folder: Path, prefix: str, nsd_ids, images) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for row, (nsd, image) in enumerate(zip(nsd_ids, images), 1):
        Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB").save(
            folder / f"{prefix}-{row:04d}_nsd-{int(nsd):05d}.png", format="png")


def write_labels_csv(path, coco_ids, coco_splits, category_names, multi_hot) -> Path:
    """``cocoId,cocoSplit,<category>...`` with one row per image, 0.0/1.0 cells (as paper 004's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["cocoId", "cocoSplit", *category_names])
        for coco, split, row in zip(coco_ids, coco_splits, np.asarray(multi_hot)):
            out.writerow([int(coco), split, *(f"{float(v):.1f}" for v in row)])
    return path


def write_algonauts_tree(
    root,
    subjects: Mapping[str, AlgonautsSubject],
    mappings: Mapping[str, Mapping[int, str]],
    *,
    category_names: Sequence[str] = (),
    labels_csv: str = "image_infos/{subject}_infos_train.csv",
    mapping_format: str = "published",
) -> Path:
    """Write ``subjects`` (folder name ``subjNN`` → arrays) under ``root``; return ``root``.

    ``mappings`` (atlas → {label: name}, label 0 ``Unknown`` as released) is written into every
    subject's ``roi_masks``; labels CSVs go to ``labels_csv`` (``{subject}`` = the folder name).
    """
    root = Path(root)
    for folder, s in subjects.items():
        base = root / folder
        fmri = base / "training_split" / "training_fmri"
        _save(fmri / "lh_training_fmri.npy", s.lh_fmri)
        _save(fmri / "rh_training_fmri.npy", s.rh_fmri)
        _save_pngs(base / "training_split" / "training_images", "train", s.nsd_ids, s.images)
        if s.test_nsd_ids is not None:
            _save_pngs(base / "test_split" / "test_images", "test", s.test_nsd_ids, s.test_images)
        masks = base / "roi_masks"
        masks.mkdir(parents=True, exist_ok=True)
        for atlas, mapping in mappings.items():
            (masks / f"mapping_{atlas}.npy").write_bytes(mapping_bytes(mapping, mapping_format))
        for atlas, hemis in s.roi_labels.items():
            for hemi, labels in zip(("lh", "rh"), hemis):
                _save(masks / f"{hemi}.{atlas}_challenge_space.npy", np.asarray(labels))
        if s.fsaverage_vertices is not None:
            for h, (hemi, where) in enumerate(zip(("lh", "rh"), s.fsaverage_vertices)):
                where = np.asarray(where, dtype=np.int64)
                all_vertices = np.zeros(s.fsaverage_size, dtype=np.int64)
                all_vertices[where] = 1
                _save(masks / f"{hemi}.all-vertices_fsaverage_space.npy", all_vertices)
                for atlas, hemis in s.roi_labels.items():
                    labels = np.asarray(hemis[h])
                    full = np.zeros(s.fsaverage_size, dtype=labels.dtype)
                    full[where] = labels
                    _save(masks / f"{hemi}.{atlas}_fsaverage_space.npy", full)
        if s.labels is not None:
            write_labels_csv(root / labels_csv.format(subject=folder), *s.labels[:2], category_names, s.labels[2])
    return root
