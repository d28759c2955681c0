"""The data stages of the DAG, one function per rule, taking paths and plain parameters."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ..errors import InputError
from . import masking, prepared
from .readers import get_reader
from .readers.base import StimulusSet
from .readers.images import load_gallery_folder

log = logging.getLogger(__name__)


def load_stimuli(source: dict, image_size: int) -> StimulusSet:
    """Read a dataset's images from its published layout through its reader.

    ``source`` keys: ``reader`` (a format name of :data:`~.readers.READERS`), ``root`` (folder),
    ``dataset`` (the config entry the reader reads its settings from), ``gallery_images``
    (optional folder), ``truth`` (optional simulation truth file).
    """
    stimuli = get_reader(source["reader"]).read_stimuli(source["dataset"], source["root"], image_size)
    if source.get("gallery_images"):
        stimuli.gallery = load_gallery_folder(source["gallery_images"], image_size)
    truth = source.get("truth")
    if truth:
        _attach_foreground(stimuli, Path(truth), image_size)
    return stimuli


def _attach_foreground(stimuli: StimulusSet, truth: Path, image_size: int) -> None:
    """Attach the simulation's true foreground (and categories, for a format without them) to
    every split, row by row: by image name, else (a reader that splits differently or names
    images its own way, e.g. the Algonauts twin of the simulated NSD) by stimulus id, from any of
    the truth's splits."""
    with h5py.File(truth, "r") as f:
        pool = {sp: f[f"images/{sp}"] for sp in ("train", "test", "unpaired") if f"images/{sp}" in f}
        names = {sp: g["names"][()].astype(str) for sp, g in pool.items()}
        ids = {sp: g["stimulus_id"][()] for sp, g in pool.items() if "stimulus_id" in g}
        for split in ("train", "test", "unpaired"):
            part = getattr(stimuli, split)
            if part is None or not len(part):
                continue
            if split in pool and np.array_equal(names[split], part.names):
                where = [(split, np.arange(len(part)))]
            else:
                try:
                    where = _truth_rows(truth, split, part, names, ids)
                except InputError:
                    if split in pool:
                        raise
                    continue  # images the simulation did not make (e.g. a user's unpaired folder)
            fg = np.empty((len(part), *pool[where[0][0]]["foreground"].shape[1:]), bool)
            category = np.full(len(part), -1, np.int64)
            has_category = all("category" in pool[sp] for sp, _ in where)
            for sp, rows in where:
                sel = rows >= 0
                fg[sel] = pool[sp]["foreground"][()][rows[sel]]
                if has_category:
                    category[sel] = pool[sp]["category"][()][rows[sel]]
            if has_category and (np.asarray(part.category) < 0).all():
                part.category = category  # a format without categories (NSD): the true ones
            if fg.shape[1] != image_size:  # simulated at another size: resize like the images
                fg = np.stack([
                    np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((image_size, image_size), Image.BILINEAR)) >= 128
                    for m in fg
                ])  # fmt: skip
            part.foreground = fg


def _truth_rows(truth: Path, split: str, part, names: dict, ids: dict) -> list[tuple[str, np.ndarray]]:
    """[(truth split, row per image of ``part`` or -1)] covering every image once; InputError when
    an image is in none of the truth's splits (by name, or by stimulus id where the truth has ids)."""
    keys, pools = (part.names, names) if set(part.names) <= set().union(*map(set, names.values())) else (None, None)
    if keys is None and ids and np.isfinite(np.asarray(part.stimulus_id, float)).all():
        keys, pools = np.asarray(part.stimulus_id, float), ids
        if not set(keys.tolist()) <= set().union(*(set(v.tolist()) for v in pools.values())):
            keys = None
    if keys is None:
        raise InputError(f"{truth}: foreground masks do not match the {split} image names")
    found = np.zeros(len(keys), bool)
    out = []
    for sp, values in pools.items():
        index = {k: r for r, k in enumerate(np.asarray(values).tolist())}
        rows = np.array([-1 if found[i] else index.get(k, -1) for i, k in enumerate(np.asarray(keys).tolist())], np.int64)
        found |= rows >= 0
        if (rows >= 0).any():
            out.append((sp, rows))
    return out


def prepare_images(source: dict, image_size: int, output: str, config_hash: str) -> None:
    """Rule ``prepare_images``: the dataset's images once, uint8 NHWC with their ids."""
    stimuli = load_stimuli(source, image_size)
    attrs = {"config_hash": config_hash, "image_size": image_size, "source": str(source["root"])}
    prepared.write_images_file(output, stimuli, attrs)
    log.info(
        "wrote %s: %d train, %d test, %d unpaired, %d gallery images", output,
        len(stimuli.train), len(stimuli.test), len(stimuli.unpaired or []), len(stimuli.gallery or []),
    )  # fmt: skip


def _scalar_info(attrs: dict, max_items: int = 200) -> dict:
    """The reader's provenance that fits a JSON attribute: scalars and short lists of scalars
    (sessions used, beta version, files read); arrays such as per-trial numbers are left out."""
    plain = (str, int, float, bool)

    def value(v):
        if isinstance(v, np.ndarray) and (v.ndim > 1 or v.size > max_items):
            return None
        v = v.tolist() if isinstance(v, (np.generic, np.ndarray)) else v
        if isinstance(v, plain):
            return v
        if isinstance(v, (list, tuple)) and len(v) <= max_items and all(isinstance(i, plain) for i in v):
            return list(v)
        return None

    return {k: value(v) for k, v in attrs.items() if value(v) is not None}


def _stat(path) -> dict:
    st = Path(path).stat()
    return {"path": str(path), "bytes": st.st_size, "mtime": int(st.st_mtime)}


def mask_roi(
    source: dict,
    images: str,
    subject: str,
    roi: str,
    composites: dict,
    normalization: str,
    roi_source: str,
    output: str,
    dataset: str,
    config_hash: str,
) -> None:
    """Rule ``mask_roi``: one subject × ROI, normalised, test repeats averaged, with provenance.

    ``source`` keys: ``reader`` (a format name), ``options`` (the entry's ``options:``, handed to
    ``read_subject``), ``files`` (what the reader's ``subject_inputs`` named: ``subject``, optional
    ``unlabeled``, and ``roi_labels`` + ``roi_table`` — a NIfTI label volume and its TSV — for
    ``roi_source == "nifti"``), and ``truth`` (simulated data: the true per-voxel noise ceilings).
    """
    stimuli = prepared.read_images_file(images, with_images=False)
    reader = get_reader(source["reader"])
    files = source["files"]
    subject_file = Path(files["subject"])
    recording = reader.read_subject(files, stimuli, source.get("options") or {})
    info = _scalar_info(recording.attrs)
    if source.get("truth") and recording.noise_ceiling is None:
        with h5py.File(source["truth"], "r") as f:  # simulated data: the true noise ceiling
            recording.noise_ceiling = f[f"sub-{subject}/noise_ceiling"][()]
    flags = None
    if roi_source == "nifti":
        flags = masking.rois_from_nifti(Path(files["roi_labels"]), Path(files["roi_table"]), recording.voxel_xyz)
    result = masking.prepare_subject(
        recording, roi, composites, normalization, n_test_images=len(stimuli.test), roi_flags=flags,
        roster=reader.rois, consume=True,
    )
    result.attrs["source_info"] = json.dumps(info, sort_keys=True)
    # every file read, with its size and mtime (source_sha256 hashes only ``subject``: hashing every
    # NSD session would read tens of GB again per ROI)
    result.attrs["source_files"] = json.dumps(
        {k: _stat(v) for k, v in sorted(files.items()) if v and Path(v).is_file()}, sort_keys=True
    )
    result.attrs.update(
        prepared.provenance(subject_file, config_hash, dataset=dataset, subject=subject, roi_source=roi_source)
    )
    prepared.write_subject_file(output, result)
    log.info(
        "wrote %s: %d voxels, %d train samples, %d test images",
        output, result.attrs["n_voxels"], len(result["train/fmri"]), len(result["test/fmri"]),
    )  # fmt: skip
