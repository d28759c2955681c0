"""The prepared files every method reads (DESIGN.md "Data contracts").

``results/<dataset>/images.h5`` — the dataset's images, once::

    /<split>/images       (N, H, W, 3) uint8, split in {train, test, unpaired, gallery}
    /<split>/names        (N,) bytes, unique stimulus names
    /<split>/stimulus_id  (N,) float64 (NaN when not applicable)
    /<split>/category     (N,) int64 (-1 when unknown)
    /<split>/foreground   (N, H, W) bool, simulated data only
    /<split>/captions     (N,) str, JSON list of the image's captions, when the reader has them
    /<split>/objects      (N,) str, JSON list of its object instances (category, bbox, area_fraction)

``results/<dataset>/sub-<s>/roi-<roi>/data.h5`` — one subject × ROI after masking::

    /train/fmri (n, V) float32, /train/image_index (n,), /train/run (n,)
    /test/fmri (n_img, V) float32 averaged over repeats, /test/image_index (n_img,)
    /test/fmri_trials (m, V), /test/trial_image_index (m,), /test/trial_run (m,)
    /imagery/... same as /test when the source has imagery
    /unlabeled/fmri (k, V) float32 when the source has an unlabeled pool
    /voxels/source_index (V,) the VoxelData column of each voxel in the source file
    /voxels/xyz (V, 3), /voxels/roi_names (R,), /voxels/roi_membership (R, V) bool,
    /voxels/noise_ceiling (V,) when known
    /normalization/train_mean, /normalization/train_std (V,) raw statistics of training samples
    attrs: dataset, subject, roi, roi_source, normalization, n_voxels, train_repeats (single |
           average), source_file, source_sha256, config_hash, fmrirecon_version, source_info (JSON:
           the reader's short provenance, e.g. NSD's sessions and beta_version), source_files
           (JSON: every file the reader read, with bytes and mtime; source_sha256 covers only
           the ``subject`` file, e.g. NSD's first session)

``image_index`` rows refer to ``/train`` (for train samples) or ``/test`` (test and imagery) of
images.h5.

``results/<dataset>/sub-<s>/roi-<roi>/<method>/recon.h5`` — what every method writes and every
evaluation reads::

    /images       (N, H, W, 3) or (N, S, H, W, 3) uint8, S samples per fMRI pattern
    /image_index  (N,) rows of images.h5 /test, in that order
    /image_ids    (N,) bytes, the names of those test images
    attrs: method, family, dataset, subject, roi, n_samples, plus the method's own provenance
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import InputError
from .atomic import atomic_path
from .readers.base import ImageSplit, StimulusSet

SPLITS = ("train", "test", "unpaired", "gallery")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _ds(group, name, data, **kw):
    return group.create_dataset(name, data=data, track_times=False, **kw)


def write_images_file(path: str | Path, stimuli: StimulusSet, attrs: dict) -> None:
    """Write ``images.h5`` atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for split in SPLITS:
            part: ImageSplit | None = getattr(stimuli, split)
            if part is None:
                continue
            g = f.create_group(split)
            _ds(g, "images", part.images, chunks=(1, *part.images.shape[1:]) if len(part) else None)
            _ds(g, "names", np.asarray(part.names).astype("S"))
            _ds(g, "stimulus_id", np.asarray(part.stimulus_id, np.float64))
            _ds(g, "category", np.asarray(part.category, np.int64))
            if part.foreground is not None:
                _ds(g, "foreground", part.foreground, compression="gzip")
            for key in ("captions", "objects"):
                if getattr(part, key) is not None:
                    text = [json.dumps(x, sort_keys=True) for x in getattr(part, key)]
                    _ds(g, key, np.array(text, dtype=object), dtype=h5py.string_dtype())
        for k, v in attrs.items():
            f.attrs[k] = v


def open_h5(path: str | Path) -> h5py.File:
    """Open an HDF5 file read-only; InputError (one line naming it) when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from exc


def _json_list(group, key: str) -> list | None:
    if key not in group:
        return None
    return [json.loads(x) for x in group[key].asstr()[()]]


def read_images_file(path: str | Path, splits=SPLITS, with_images: bool = True) -> StimulusSet:
    """Read ``images.h5``; with ``with_images=False`` only ids, names and categories are loaded."""
    parts: dict[str, ImageSplit | None] = {}
    with open_h5(path) as f:
        for split in SPLITS:
            if split not in f or split not in splits:
                parts[split] = None
                continue
            g = f[split]
            n = g["names"].shape[0]
            parts[split] = ImageSplit(
                images=g["images"][()] if with_images else np.zeros((n, 0, 0, 3), np.uint8),
                names=g["names"][()].astype(str),
                stimulus_id=g["stimulus_id"][()],
                category=g["category"][()],
                foreground=g["foreground"][()] if (with_images and "foreground" in g) else None,
                captions=_json_list(g, "captions"),
                objects=_json_list(g, "objects"),
            )
    missing = [s for s in ("train", "test") if s in splits and parts[s] is None]
    if missing:
        raise InputError(f"{path}: expected groups {', '.join('/' + m for m in missing)}")
    return StimulusSet(parts["train"], parts["test"], parts["unpaired"], Path(path), parts["gallery"])  # type: ignore[arg-type]


@dataclass
class PreparedSubject:
    """One subject × ROI after masking and normalisation (see module docstring)."""

    groups: dict[str, dict[str, np.ndarray]]
    attrs: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        group, name = key.split("/")
        return self.groups[group][name]


def write_subject_file(path: str | Path, prepared: PreparedSubject) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for group, items in prepared.groups.items():
            g = f.create_group(group)
            for name, arr in items.items():
                _ds(g, name, arr)
        for k, v in prepared.attrs.items():
            f.attrs[k] = v


def read_subject_file(path: str | Path) -> PreparedSubject:
    with open_h5(path) as f:
        groups = {}
        for group in f:
            groups[group] = {}
            for name, ds in f[group].items():
                arr = ds[()]
                groups[group][name] = arr.astype(str) if arr.dtype.kind == "S" else arr
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    for key in ("train", "test", "voxels"):
        if key not in groups:
            raise InputError(f"{path}: expected group /{key} in a prepared subject file")
    return PreparedSubject(groups, attrs)


def provenance(source: Path, config_hash: str, **extra) -> dict:
    return {
        "source_file": str(source),
        "source_sha256": sha256_file(source),
        "config_hash": config_hash,
        "fmrirecon_version": __version__,
        **{k: v for k, v in extra.items()},
    }


def write_recon_file(path: str | Path, images: np.ndarray, image_index: np.ndarray, image_ids, attrs: dict) -> None:
    """Write ``recon.h5`` atomically after checking the contract."""
    if images.dtype != np.uint8 or images.ndim not in (4, 5) or images.shape[-1] != 3:
        raise ValueError(f"recon images must be uint8 (N, [S,] H, W, 3), got {images.dtype} {images.shape}")
    if len(images) != len(image_index) or len(image_index) != len(image_ids):
        raise ValueError("recon images, image_index and image_ids must have the same length")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _ds(f, "images", images, chunks=(1, *images.shape[1:]))
        _ds(f, "image_index", np.asarray(image_index, np.int64))
        _ds(f, "image_ids", np.asarray(image_ids).astype("S"))
        for k, v in {"n_samples": 1 if images.ndim == 4 else images.shape[1], **attrs}.items():
            f.attrs[k] = v


def read_recon_file(path: str | Path) -> dict:
    """Read ``recon.h5``: dict with images, image_index, image_ids and attrs."""
    with open_h5(path) as f:
        for key in ("images", "image_index", "image_ids"):
            if key not in f:
                raise InputError(f"{path}: expected dataset /{key} in a reconstruction file")
        images = f["images"][()]
        if images.dtype != np.uint8 or images.ndim not in (4, 5) or images.shape[-1] != 3:
            raise InputError(f"{path}: /images must be uint8 (N, [S,] H, W, 3), got {images.dtype} {images.shape}")
        return {
            "images": images,
            "image_index": f["image_index"][()],
            "image_ids": f["image_ids"][()].astype(str),
            "attrs": {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()},
        }
