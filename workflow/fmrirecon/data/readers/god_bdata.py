"""Format ``god_bdata``: Generic Object Decoding as published (Horikawa & Kamitani 2017).

Files under the dataset folder: ``SubjectN.h5`` (BData: VoxelData, DataType, Run, stimulus_id,
voxel_x/y/z, ROI_* columns), ``imageID_training.csv`` / ``imageID_test.csv`` and the images in
``images/training`` and ``images/test``. Optional: an unlabeled BData pool per subject
(``unlabeled_fmri`` pattern), a NIfTI ROI label volume ``sub-<s>_roi-labels.nii.gz`` with
``roi_labels.tsv`` (``roi_source: nifti``), unpaired and gallery image folders.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ..bdata import BDataFile
from .base import Reader, StimulusSet, SubjectRecording
from .god import read_god_bdata
from .images import read_god_stimuli

#: GOD's atomic ROIs (its files also carry the unions LVC, HVC, VC).
ROIS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA")


def image_inputs(dataset: dict, root: str) -> list[str]:
    lists = [f"{root}/imageID_training.csv", f"{root}/imageID_test.csv"]
    return lists + [f"{root}/images/training", f"{root}/images/test"]


def subject_inputs(dataset: dict, root: str, subject: str) -> dict[str, str]:
    files = {"subject": f"{root}/Subject{subject}.h5"}
    if dataset.get("unlabeled_fmri"):
        files["unlabeled"] = dataset["unlabeled_fmri"].format(subject=subject)
    if dataset.get("roi_source") == "nifti":
        files["roi_labels"] = f"{root}/sub-{subject}_roi-labels.nii.gz"
        files["roi_table"] = f"{root}/roi_labels.tsv"
    return files


def read_stimuli(dataset: dict, root: str, image_size: int) -> StimulusSet:
    return read_god_stimuli(Path(root), image_size, unpaired_folder=dataset.get("unpaired_images") or None)


def read_subject(files: dict, stimuli: StimulusSet, options: dict | None = None) -> SubjectRecording:
    return read_god_bdata(Path(files["subject"]), stimuli, unlabeled_file=files.get("unlabeled") or None)


def check(dataset: dict, where: str) -> None:
    pattern = dataset.get("unlabeled_fmri") or ""
    if pattern:
        try:
            pattern.format(subject="1")
        except (KeyError, IndexError, ValueError):
            raise InputError(
                f"config error at {where}.unlabeled_fmri: {pattern!r} must be a file pattern whose only "
                "placeholder is {subject}"
            ) from None


def file_rois(dataset: dict, root: str, subject: str) -> tuple[str, set[str]] | None:
    """The ROI names of the label table (``roi_source: nifti``) or the BData ``ROI_*`` keys."""
    files = subject_inputs(dataset, root, subject)
    if dataset.get("roi_source") == "nifti":
        table = Path(files["roi_table"])
        if not table.is_file():
            return None
        rows = [ln.split("\t") for ln in table.read_text().splitlines()[1:] if ln.strip()]
        return str(table), {row[-1].strip() for row in rows}
    if not Path(files["subject"]).is_file():
        return None
    try:
        keys = BDataFile.open(files["subject"]).keys
    except InputError:  # a broken file is the job's to report (one line, no output)
        return None
    names = {k[4:] for k in keys if k.startswith("ROI_")}
    return files["subject"], names | ({"V4"} if "hV4" in names else set())


READER = Reader(
    name="god_bdata",
    description="GOD SubjectN.h5 (BData) + image lists + images",
    rois=ROIS,
    image_inputs=image_inputs,
    subject_inputs=subject_inputs,
    read_stimuli=read_stimuli,
    read_subject=read_subject,
    check=check,
    file_rois=file_rois,
    published_dataset="GOD",
)
