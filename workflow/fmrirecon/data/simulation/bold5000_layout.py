"""Write an experiment in BOLD5000 release 2.0's published tree (read by the ``bold5000`` reader).

Two pure writers that check nothing and simulate nothing (tests also write broken trees with them):

- :func:`write_stimuli_tree`: ``BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/<folder>/<name>``
  (``COCO_*`` → ``COCO/``, ``n<8 digits>_*`` → ``ImageNet/``, anything else → ``Scene/``) and
  ``Scene_Stimuli/repeated_stimuli_113_list.txt``;
- :func:`write_subject_tree`: ``Stimuli_Presentation_Lists/CSIk/CSIk_sessNN/CSIk_sessNN_runNN.txt``
  and ``BOLD5000_GLMsingle_ROI_betas/py/CSIk_GLMbetas-<beta type>_allses_<LH|RH><area>.npy``.
- :func:`write_release1_tree`: release 1's ``ROIs/CSIk/mat/CSIk_ROIs_TR<tr>.mat`` (MATLAB v5, one
  variable per label) and ``ROIs/stim_lists/CSI0k_stim_lists.txt``, for tests; the simulator's
  own output (below) stays release 2.

The rest is the GOD-like design's layout plugin (:mod:`.god_layouts`): the same simulated experiment
under ``raw/<NAME>/``. Mapping, stated:

- **ROIs**: ``EarlyVis`` = V1 ∪ V2 ∪ V3 (BOLD5000's small early-visual localiser ROI; V4 and FFA are
  in no file), ``LOC`` and ``PPA`` as simulated, ``OPA`` and ``RSC`` only when ``simulation.voxels``
  lists them (the voxel simulator's optional scene areas; without them their files are not
  written, so neither they nor ``VC`` exist). Hemisphere = sign of the voxel's x coordinate (x < 0:
  LH). Within a file the voxels keep the simulator's order.
- **Trials**: GOD's presentation order without the imagery block; each simulated run is a run
  list, ten runs a session. Every presentation of a test image after its first carries ``rep_``.
- **Images**: ``<GOD name>.JPEG`` in ``ImageNet/`` (the names are ImageNet-style), JPEG quality 95;
  the repeated list names the test images (fewer than 113: the file keeps its published name).
- **Subjects**: simulated subject ``k`` (or ``CSIk``) is written as ``CSIk``; a label that is no
  BOLD5000 subject name is not written (a config reading it fails at parse time).

TRUTH_PER_VOXEL is False: the reader's columns follow MinD-Vis' file order and leave V4 and FFA out,
so truth.h5's per-voxel arrays do not line up (no oracle, no true noise ceilings).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import InputError
from ..readers import bold5000 as reader
from ..readers.bold5000_files import (
    AREAS,
    BETA_TYPE,
    BETAS_DIR,
    DEFAULT_TR,
    HEMIS,
    LISTS_DIR,
    PRESENTED_DIR,
    REPEAT_PREFIX,
    REPEATED_LIST,
    beta_file,
    roi_definitions,
    roi_mat_file,
    stim_list_file,
)  # fmt: skip
from .god_layouts import SimStimuli, SimSubject

log = logging.getLogger(__name__)

NAME = reader.READER.name
TRUTH_PER_VOXEL = False
RUNS_PER_SESSION = 10
EXTENSION = ".JPEG"
#: BOLD5000 area → the simulated ROIs it holds
AREA_PARTS = {"EarlyVis": ("V1", "V2", "V3"), "LOC": ("LOC",), "OPA": ("OPA",), "PPA": ("PPA",), "RSC": ("RSC",)}
_IMAGENET = re.compile(r"n\d{8}_.*")


# -- pure writers --------------------------------------------------------------------------------


def image_folder(name: str) -> str:
    """Presented_Stimuli subfolder of an image file name, as published."""
    if name.startswith("COCO_"):
        return "COCO"
    return "ImageNet" if _IMAGENET.fullmatch(name) else "Scene"


def write_stimuli_tree(root, images: Mapping[str, np.ndarray], repeated: Sequence[str]) -> Path:
    """``images``: file name (extension included) → (H, W, 3) uint8; ``repeated``: the lines of the
    repeated list. Returns ``root``."""
    root = Path(root)
    for name, img in images.items():
        path = root / PRESENTED_DIR / image_folder(name) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(path, format="JPEG" if path.suffix.lower() in
                                                              (".jpg", ".jpeg") else None, quality=95)  # fmt: skip
    (root / REPEATED_LIST).parent.mkdir(parents=True, exist_ok=True)
    (root / REPEATED_LIST).write_text("".join(f"{n}\n" for n in repeated))
    return root


def write_subject_tree(
    root, csi: str, sessions: Sequence[Sequence[Sequence[str]]], betas: Mapping[str, np.ndarray],
    beta_type: str = BETA_TYPE,
) -> Path:  # fmt: skip
    """``sessions``: per session, per run, the list lines (``rep_`` prefixes included); ``betas``:
    label (``LHEarlyVis`` ...) → (trials, voxels), saved as given. Returns ``root``."""
    root = Path(root)
    for s, runs in enumerate(sessions, 1):
        folder = root / LISTS_DIR / csi / f"{csi}_sess{s:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for r, lines in enumerate(runs, 1):
            (folder / f"{csi}_sess{s:02d}_run{r:02d}.txt").write_text("".join(f"{ln}\n" for ln in lines))
    (root / BETAS_DIR).mkdir(parents=True, exist_ok=True)
    for label, x in betas.items():
        np.save(beta_file(root / BETAS_DIR, csi, label, beta_type), np.asarray(x))
    return root


def write_release1_tree(
    root, csi: str, lines: Sequence[str], variables: Mapping[str, np.ndarray], tr: int = DEFAULT_TR,
) -> Path:  # fmt: skip
    """Release 1: ``lines`` (``rep_`` prefixes included) as ``ROIs/stim_lists/CSI0k_stim_lists.txt``,
    ``variables`` (label ``LHEarlyVis`` … → (trials, voxels), or anything a test wants in the file)
    saved as given in ``ROIs/CSIk/mat/CSIk_ROIs_TR<tr>.mat`` with ``scipy.io.savemat`` (MATLAB v5).
    Returns ``root``."""
    from scipy.io import savemat

    root = Path(root)
    lists = stim_list_file(root, csi)
    lists.parent.mkdir(parents=True, exist_ok=True)
    lists.write_text("".join(f"{ln}\n" for ln in lines))
    mat = roi_mat_file(root, csi, tr)
    mat.parent.mkdir(parents=True, exist_ok=True)
    savemat(mat, {k: np.asarray(v) for k, v in variables.items()}, format="5", oned_as="column")
    return root


# -- the GOD-like design's layout ----------------------------------------------------------------


def write_stimuli(folder: Path, stimuli: SimStimuli) -> None:
    names = {f"{n}{EXTENSION}": img for n, img in zip(stimuli.train_names, stimuli.train_images)}
    names.update({f"{n}{EXTENSION}": img for n, img in zip(stimuli.test_names, stimuli.test_images)})
    write_stimuli_tree(folder, names, [f"{n}{EXTENSION}" for n in stimuli.test_names])


def hemisphere_columns(roi: np.ndarray, xyz: np.ndarray) -> dict[str, np.ndarray]:
    """Label (``LHEarlyVis`` ...) → the simulated voxel columns of that file (non-empty ones only)."""
    out = {}
    for area in AREAS:
        for hemi in HEMIS:
            side = xyz[:, 0] < 0 if hemi == "LH" else xyz[:, 0] >= 0
            cols = np.flatnonzero(np.isin(roi, AREA_PARTS[area]) & side)
            if len(cols):
                out[f"{hemi}{area}"] = cols
    return out


def write_subject(folder: Path, sub: SimSubject) -> None:
    try:
        csi = reader.subject_name(sub.subject)
    except InputError:
        log.info("subject %s has no BOLD5000 name (CSIk): not written in the %s layout", sub.subject, NAME)
        return
    train_names, test_names = sub.train_names, sub.test_names
    keep = np.flatnonzero(sub.datatype != 3)  # BOLD5000 has no imagery
    seen: set[str] = set()
    lines = []
    for i in keep:
        name = (train_names if sub.datatype[i] == 1 else test_names)[sub.image_row[i]]
        lines.append(f"{REPEAT_PREFIX if name in seen and sub.datatype[i] == 2 else ''}{name}{EXTENSION}")
        seen.add(name)
    runs = sub.run[keep]
    order = np.unique(runs, return_index=True)[1]
    run_ids = runs[np.sort(order)]  # runs in presentation order
    sessions: list[list[list[str]]] = []
    for k, r in enumerate(run_ids):
        if k % RUNS_PER_SESSION == 0:
            sessions.append([])
        sessions[-1].append([lines[j] for j in np.flatnonzero(runs == r)])
    x = np.asarray(sub.raw, dtype=np.float32)[keep]
    betas = {label: x[:, cols] for label, cols in hemisphere_columns(sub.roi, sub.xyz).items()}
    write_subject_tree(folder, csi, sessions, betas)


def reader_view(dataset: dict, raw: str, simulation: dict) -> dict:
    """The entry as the reader sees ``raw/<NAME>``, with the simulator's unpaired images and gallery."""
    return {
        **dataset,
        "format": NAME,
        "path": f"{raw}/{NAME}",
        "unlabeled_fmri": "",
        "unpaired_images": dataset["unpaired_images"] or f"{raw}/images/unpaired",
        "gallery_images": dataset["gallery_images"] or f"{raw}/images/gallery",
    }


def roi_names(dataset: dict, simulation: dict | None = None) -> set[str]:
    """The ROIs the written files define: every one, or with ``simulation`` those its voxels fill."""
    simulated = set((simulation or {}).get("voxels") or {}) or {p for parts in AREA_PARTS.values() for p in parts}
    areas = [a for a, parts in AREA_PARTS.items() if simulated & set(parts)]
    return set(roi_definitions(f"{h}{a}" for a in areas for h in HEMIS))
