"""Other published layouts the GOD-like design also writes, from the same simulated experiment.

The GOD-like design (:mod:`.dataset`) is a single-presentation training set and a repeated test
set, which is also the shape of BOLD5000 (the 113 repeated images as test) and THINGS-fMRI (100
test images × 12 repeats). Each layout here is a module that writes the experiment in that
dataset's published tree under ``raw/<reader name>/`` and tells the DAG how to read it back.
Rule ``simulate_dataset`` writes only the layouts its dataset is read as (``layouts`` in the
simulation settings it passes, :func:`fmrirecon.data.simulation.simulation_for`), so other datasets' files and parameters
stay as they were. A layout module has:

- ``NAME``: the reader name a config uses in ``read_as``;
- ``write_stimuli(folder, stimuli: SimStimuli)``: the images and lists, once per dataset;
- ``write_subject(folder, sub: SimSubject)``: one subject's files;
- ``reader_view(dataset, raw, simulation) -> dict``: the dataset entry as the reader sees the tree
  (``format``, ``path`` = ``raw/<NAME>``, options);
- ``roi_names(dataset, simulation) -> set[str]``: the ROIs the written files define (with
  ``simulation`` the ``simulation:`` block, whose ``voxels`` say which areas exist);
- ``TRUTH_PER_VOXEL``: True only when the reader returns the training / test rows in the order
  of GOD's image lists and the voxels in the simulator's order (truth.h5's per-subject arrays
  then line up: the oracle and the true noise ceilings); else False.

Writers only read what they are given: they draw no random numbers from the design's streams, so
adding a layout changes no value of the GOD files, truth.h5 or any existing config's results.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np


@dataclass(frozen=True)
class SimStimuli:
    """The design's images. ``*_names`` are GOD-style ``n<synset>_<k>``; categories are indices
    into the simulator's category table; ``*_images`` (N, H, W, 3) uint8."""

    train_images: np.ndarray
    train_names: np.ndarray
    train_category: np.ndarray
    test_images: np.ndarray
    test_names: np.ndarray
    test_category: np.ndarray
    category_names: tuple[str, ...]  # readable name per category index (e.g. ``red_disc``)


@dataclass(frozen=True)
class SimSubject:
    """One simulated subject's recording in GOD's presentation order.

    ``raw`` (n_samples, n_voxels) float64 as written to ``Subject<s>.h5``; ``datatype`` 1 train,
    2 test, 3 imagery (layouts without imagery drop 3); ``image_row`` 0-based row in the train /
    test image lists; ``run`` 1-based run numbers; ``roi`` (n_voxels,) atomic ROI name per voxel
    (``V1`` … ``PPA``, plus any extra ROI the config simulates); ``xyz`` (n_voxels, 3) mm;
    ``test_repeats`` presentations per test image; ``trials_per_run`` as configured;
    ``train_names`` / ``test_names`` the rows ``image_row`` points to."""

    subject: str
    raw: np.ndarray
    datatype: np.ndarray
    image_row: np.ndarray
    run: np.ndarray
    roi: np.ndarray
    xyz: np.ndarray
    test_repeats: int
    trials_per_run: int
    train_names: np.ndarray  # the design's image names (``SimStimuli``), so ``image_row`` can be named
    test_names: np.ndarray


#: reader name -> layout module; the GOD design writes each under ``raw/<name>/``
LAYOUTS: dict[str, ModuleType] = {}

from . import bold5000_layout, things_layout  # noqa: E402  (they import the dataclasses above)

LAYOUTS[bold5000_layout.NAME] = bold5000_layout
LAYOUTS[things_layout.NAME] = things_layout
