"""Format ``god_npz``: the SelfSuperReconst / MinD-Vis twin of GOD.

Files under the dataset folder: ``sbj_N.npz`` (``arr_0``..``arr_6`` + boolean ROI masks, data
already normalised) and the images npz (``images_npz``, default ``images_256.npz``); optional
``imageID_training.csv`` / ``imageID_test.csv`` name the images. No voxel coordinates, so ROIs
come from the file's own masks, and no unlabeled pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from .base import Reader, StimulusSet, SubjectRecording
from .god import _ARR, read_god_npz
from .god_bdata import ROIS
from .images import read_god_stimuli, read_npz_stimuli


def image_inputs(dataset: dict, root: str) -> list[str]:
    return [f"{root}/{dataset['images_npz']}"]


def subject_inputs(dataset: dict, root: str, subject: str) -> dict[str, str]:
    return {"subject": f"{root}/sbj_{subject}.npz"}


def read_stimuli(dataset: dict, root: str, image_size: int) -> StimulusSet:
    folder = Path(root)
    train_list, test_list = folder / "imageID_training.csv", folder / "imageID_test.csv"
    stimuli = read_npz_stimuli(
        folder / dataset["images_npz"], image_size,
        train_list=train_list if train_list.exists() else None,
        test_list=test_list if test_list.exists() else None,
    )  # fmt: skip
    if dataset.get("unpaired_images"):
        stimuli.unpaired = read_god_stimuli(folder, image_size, unpaired_folder=dataset["unpaired_images"]).unpaired
    return stimuli


def read_subject(files: dict, stimuli: StimulusSet, options: dict | None = None) -> SubjectRecording:
    return read_god_npz(Path(files["subject"]), stimuli)


def check(dataset: dict, where: str) -> None:
    if dataset.get("roi_source") == "nifti":
        raise InputError(
            f"config error at {where}.roi_source: the npz layout has no voxel coordinates, "
            "so ROIs come from its own masks (roi_source: metadata)"
        )
    if dataset.get("unlabeled_fmri"):
        raise InputError(f"config error at {where}.unlabeled_fmri: only supported with format god_bdata")


def file_rois(dataset: dict, root: str, subject: str) -> tuple[str, set[str]] | None:
    """The boolean mask arrays of ``sbj_N.npz`` (names only: the zip directory, no data read)."""
    path = Path(subject_inputs(dataset, root, subject)["subject"])
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
    except (OSError, ValueError):  # a broken file is the job's to report (one line, no output)
        return None
    return str(path), {n for n in names if not _ARR.fullmatch(n)}


READER = Reader(
    name="god_npz",
    description="SelfSuperReconst / MinD-Vis sbj_N.npz + images npz",
    rois=ROIS,
    image_inputs=image_inputs,
    subject_inputs=subject_inputs,
    read_stimuli=read_stimuli,
    read_subject=read_subject,
    check=check,
    file_rois=file_rois,
    published_dataset="GOD",
)
