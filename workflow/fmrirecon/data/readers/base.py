"""The reader interface every dataset module implements.

A reader turns one dataset's published files into two in-memory objects:

- :class:`SubjectRecording` - one subject's samples × voxels with design columns and ROI flags;
- :class:`StimulusSet` - the dataset's images (uint8 NHWC), once per dataset, with their ids.

New datasets (NSD, BOLD5000, THINGS-fMRI, HCP) are new modules that return these two objects;
masking, normalisation and everything downstream stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

#: ``DataType`` codes of GOD's BData files.
TRAIN, TEST, IMAGERY = 1, 2, 3


@dataclass
class SubjectRecording:
    """One subject's fMRI samples.

    Attributes:
        fmri: (n_samples, n_voxels) float32, as stored (not yet normalised).
        datatype: (n_samples,) int, 1 training, 2 perception test, 3 imagery.
        run: (n_samples,) int, run number (unique across data types after reading).
        image_index: (n_samples,) int, 0-based row of the sample's image in
            ``StimulusSet.train`` (datatype 1) or ``StimulusSet.test`` (datatype 2 and 3);
            -1 when unknown.
        voxel_xyz: (n_voxels, 3) float, voxel coordinates (mm when known, else voxel index).
        rois: ROI name without the ``ROI_`` prefix (``V1``, ``LVC``, ``VC``) → (n_voxels,) bool.
        source: the file the data came from.
        unlabeled: optional (n, n_voxels) float32 fMRI without stimuli (pretraining pool).
        unlabeled_run: optional (n,) int run numbers of the unlabeled samples.
        noise_ceiling: optional (n_voxels,) float, per-voxel noise ceiling if the source has one.
        prenormalized: True when the source already normalised the data (the npz twin).
        attrs: free-form provenance (e.g. the BData keys that were read).
        train_repeats: ``single`` (one training sample per trial) or ``average``: rule
            ``mask_roi`` averages the training trials per image after normalising (NSD's
            ``train_trials: average``, the Brain-Diffuser convention).
    """

    fmri: np.ndarray
    datatype: np.ndarray
    run: np.ndarray
    image_index: np.ndarray
    voxel_xyz: np.ndarray
    rois: dict[str, np.ndarray]
    source: Path
    unlabeled: np.ndarray | None = None
    unlabeled_run: np.ndarray | None = None
    noise_ceiling: np.ndarray | None = None
    prenormalized: bool = False
    attrs: dict = field(default_factory=dict)
    train_repeats: str = "single"

    @property
    def n_voxels(self) -> int:
        return self.fmri.shape[1]


@dataclass
class ImageSplit:
    """Images of one split (train, test or unpaired).

    Attributes:
        images: (N, H, W, 3) uint8.
        names: (N,) str, stimulus names (GOD: ``n01518878_10042``), unique.
        stimulus_id: (N,) float64, GOD float ids (``1518878.010042``); NaN when not applicable.
        category: (N,) int, category id (GOD: the synset number); -1 when unknown.
        foreground: optional (N, H, W) bool, true foreground masks (simulated data only).
        captions: optional, per image its caption strings (NSD with COCO annotations).
        objects: optional, per image its object instances as dicts (``category``, ``bbox``,
            ``area_fraction``, ...; :mod:`.coco`).
    """

    images: np.ndarray
    names: np.ndarray
    stimulus_id: np.ndarray
    category: np.ndarray
    foreground: np.ndarray | None = None
    captions: list[list[str]] | None = None
    objects: list[list[dict]] | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class StimulusSet:
    """A dataset's images, each split in the order the fMRI ``image_index`` refers to."""

    train: ImageSplit
    test: ImageSplit
    unpaired: ImageSplit | None = None
    source: Path | None = None
    gallery: ImageSplit | None = None  # other images per category (class-centroid evaluation)


@dataclass(frozen=True)
class Reader:
    """One dataset format: the files it needs, how it reads them, its ROI roster and checks.

    Attributes:
        name: the value of ``datasets[].format`` (or ``read_as`` for simulated data).
        description: one line for docs and error messages.
        rois: the format's atomic ROI roster, in the order prepared files list ``roi_names``.
        image_inputs: ``(dataset, root) -> [paths]`` that rule ``prepare_images`` reads
            (``dataset`` is the config entry, ``root`` the dataset folder).
        subject_inputs: ``(dataset, root, subject) -> {name: path}`` that rule ``mask_roi`` reads;
            ``subject`` is required, ``unlabeled``, ``roi_labels`` and ``roi_table`` are optional.
        read_stimuli: ``(dataset, root, image_size) -> StimulusSet`` (train/test/unpaired).
        read_subject: ``(files, stimuli, options) -> SubjectRecording`` with ``files`` from
            ``subject_inputs`` and ``options`` the entry's ``options:`` mapping (``{}`` when none).
        check: ``(dataset, where) -> None``; raises ``InputError`` for settings the format cannot
            honour (``where`` is the config path, e.g. ``datasets[1]``).
        file_rois: ``(dataset, root, subject) -> (file, {ROI names}) | None``: the ROIs one subject's
            files define, read cheaply (a header) so that a ROI no file has fails at parse time;
            None when the files are not there yet or the format cannot tell.
        stimuli_need_subjects: True when ``read_stimuli`` depends on the entry's ``subjects`` (NSD:
            the test set is the shared images every configured subject saw); rule
            ``prepare_images`` then passes them (and reruns when they change), else it strips them.
        published_dataset: the dataset the papers name whose data this format holds ("GOD",
            "NSD", "Algonauts 2023"): the reproduction cards match published numbers through it.
    """

    name: str
    description: str
    rois: tuple[str, ...]
    image_inputs: Callable[[dict, str], list[str]]
    subject_inputs: Callable[[dict, str, str], dict[str, str]]
    read_stimuli: Callable[[dict, str, int], StimulusSet]
    read_subject: Callable[[dict, StimulusSet, dict | None], SubjectRecording]
    check: Callable[[dict, str], None] = lambda dataset, where: None
    file_rois: Callable[[dict, str, str], tuple[str, set[str]] | None] = lambda dataset, root, subject: None
    stimuli_need_subjects: bool = False
    published_dataset: str = ""
