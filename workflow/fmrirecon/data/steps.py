"""The data stages of the DAG, one function per rule, taking paths and plain parameters."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ..errors import InputError
from . import masking, prepared
from .readers import READERS
from .readers.base import StimulusSet
from .readers.images import load_gallery_folder, read_god_stimuli, read_npz_stimuli
from .simulation.dataset import simulate_dataset

log = logging.getLogger(__name__)


def run_simulation(simulation: dict, seed: int, subjects: list[str], outdir: str) -> None:
    """Rule ``simulate_dataset``."""
    simulate_dataset(simulation, seed, subjects, outdir)


def load_stimuli(source: dict, image_size: int) -> StimulusSet:
    """Read a dataset's images from its published layout.

    ``source`` keys: ``reader`` (god_bdata | god_npz), ``root`` (folder), ``images_npz``,
    ``unpaired_images`` and ``gallery_images`` (optional folders), ``truth`` (optional
    simulation truth file).
    """
    root = Path(source["root"])
    unpaired = source.get("unpaired_images") or None
    if source["reader"] == "god_bdata":
        stimuli = read_god_stimuli(root, image_size, unpaired_folder=unpaired)
    else:
        train_list, test_list = root / "imageID_training.csv", root / "imageID_test.csv"
        stimuli = read_npz_stimuli(
            root / source["images_npz"], image_size,
            train_list=train_list if train_list.exists() else None,
            test_list=test_list if test_list.exists() else None,
        )  # fmt: skip
        if unpaired:
            stimuli.unpaired = read_god_stimuli(root, image_size, unpaired_folder=unpaired).unpaired
    if source.get("gallery_images"):
        stimuli.gallery = load_gallery_folder(source["gallery_images"], image_size)
    truth = source.get("truth")
    if truth:
        _attach_foreground(stimuli, Path(truth), image_size)
    return stimuli


def _attach_foreground(stimuli: StimulusSet, truth: Path, image_size: int) -> None:
    with h5py.File(truth, "r") as f:
        for split in ("train", "test", "unpaired"):
            part = getattr(stimuli, split)
            if part is None or f"images/{split}" not in f:
                continue
            names = f[f"images/{split}/names"][()].astype(str)
            fg = f[f"images/{split}/foreground"][()]
            if not np.array_equal(names, part.names):
                if len(names) != len(part) or set(names) != set(part.names):
                    raise InputError(f"{truth}: foreground masks do not match the {split} image names")
                order = {n: i for i, n in enumerate(names)}
                fg = fg[[order[n] for n in part.names]]
            if fg.shape[1] != image_size:  # simulated at another size: resize like the images
                fg = np.stack([
                    np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((image_size, image_size), Image.BILINEAR)) >= 128
                    for m in fg
                ])  # fmt: skip
            part.foreground = fg


def prepare_images(source: dict, image_size: int, output: str, config_hash: str) -> None:
    """Rule ``prepare_images``: the dataset's images once, uint8 NHWC with their ids."""
    stimuli = load_stimuli(source, image_size)
    attrs = {"config_hash": config_hash, "image_size": image_size, "source": str(source["root"])}
    prepared.write_images_file(output, stimuli, attrs)
    log.info(
        "wrote %s: %d train, %d test, %d unpaired, %d gallery images", output,
        len(stimuli.train), len(stimuli.test), len(stimuli.unpaired or []), len(stimuli.gallery or []),
    )  # fmt: skip


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

    ``source`` keys: ``reader``, ``subject_file``, optional ``unlabeled_file``, ``roi_labels``
    (NIfTI label volume) and ``roi_table`` (its TSV) for ``roi_source == "nifti"``, and ``truth``
    (simulated data: the true per-voxel noise ceilings).
    """
    stimuli = prepared.read_images_file(images, with_images=False)
    reader = READERS[source["reader"]]
    subject_file = Path(source["subject_file"])
    if source["reader"] == "god_bdata":
        recording = reader(subject_file, stimuli, unlabeled_file=source.get("unlabeled_file") or None)
    else:
        recording = reader(subject_file, stimuli)
    if source.get("truth") and recording.noise_ceiling is None:
        with h5py.File(source["truth"], "r") as f:  # simulated data: the true noise ceiling
            recording.noise_ceiling = f[f"sub-{subject}/noise_ceiling"][()]
    flags = None
    if roi_source == "nifti":
        flags = masking.rois_from_nifti(
            Path(source["roi_labels"]), Path(source["roi_table"]), recording.voxel_xyz
        )
    result = masking.prepare_subject(
        recording, roi, composites, normalization, n_test_images=len(stimuli.test), roi_flags=flags
    )
    result.attrs.update(
        prepared.provenance(subject_file, config_hash, dataset=dataset, subject=subject, roi_source=roi_source)
    )
    prepared.write_subject_file(output, result)
    log.info(
        "wrote %s: %d voxels, %d train samples, %d test images",
        output, result.attrs["n_voxels"], len(result["train/fmri"]), len(result["test/fmri"]),
    )  # fmt: skip
