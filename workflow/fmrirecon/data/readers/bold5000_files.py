"""The files of BOLD5000 as MinD-Vis and CAD read them: paths, presentation lists, ROI betas
(release 2.0), and release 1's ROI ``.mat`` files with their stim lists.

Everything here reads plain text, ``.npy`` arrays (``allow_pickle=False``) and MATLAB v5 ``.mat``
files (``scipy.io.loadmat``, numeric arrays only; nothing in a file is executed or unpickled);
MinD-Vis' own ``Presented_Stimuli/img_dict.npy`` is a pickle and is never opened: the images are
read from the ``Presented_Stimuli/{COCO,ImageNet,Scene}/`` files. See :mod:`.bold5000` for the
rules and the sources of release 1's format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError

BETAS_DIR = Path("BOLD5000_GLMsingle_ROI_betas") / "py"
STIMULI_DIR = Path("BOLD5000_Stimuli")
LISTS_DIR = STIMULI_DIR / "Stimuli_Presentation_Lists"
SCENE_DIR = STIMULI_DIR / "Scene_Stimuli"
PRESENTED_DIR = SCENE_DIR / "Presented_Stimuli"
REPEATED_LIST = SCENE_DIR / "repeated_stimuli_113_list.txt"
#: the GLMsingle beta version of the released ROI files (and the one MinD-Vis / CAD read)
BETA_TYPE = "TYPED-FITHRF-GLMDENOISE-RR"
HEMIS = ("LH", "RH")
#: the released ROI areas, in MinD-Vis' concatenation order
AREAS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
#: the union of every ROI file (MinD-Vis' input): EarlyVis, LOC, OPA, PPA, RSC, LH before RH
ALL_AREAS = "VC"
#: per-hemisphere ROI labels, in the order their columns are concatenated
LABELS = tuple(f"{h}{a}" for a in AREAS for h in HEMIS)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REPEAT_PREFIX = "rep_"
#: release 1 (figshare ``BOLD5000_ROIs.zip``): ``ROIs/CSIk/mat/CSIk_ROIs_TR<tr>.mat`` + ``ROIs/stim_lists/``
RELEASE1_DIR = Path("ROIs")
STIM_LISTS_DIR = RELEASE1_DIR / "stim_lists"
#: the TR files of release 1: TR1 … TR5 after each stimulus onset, and TR34
TRS = (1, 2, 3, 4, 5, 34)
DEFAULT_TR = 34

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """Sort key that orders ``sess2`` before ``sess10`` (and agrees with a string sort on the
    zero-padded published names)."""
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(name)]


def beta_file(betas_dir: Path, csi: str, label: str, beta_type: str = BETA_TYPE) -> Path:
    """``<betas_dir>/CSI1_GLMbetas-<beta_type>_allses_LHEarlyVis.npy``."""
    return Path(betas_dir) / f"{csi}_GLMbetas-{beta_type}_allses_{label}.npy"


def stimulus_name(entry: str) -> str:
    """A presentation-list or repeated-list entry → the image's name: one leading ``rep_`` and an
    image extension dropped (``rep_COCO_train2014_000000000036.jpg`` → ``COCO_train2014_000000000036``)."""
    name = entry.strip()
    name = name.removeprefix(REPEAT_PREFIX)
    stem, dot, ext = name.rpartition(".")
    return stem if dot and f".{ext.lower()}" in IMAGE_SUFFIXES else name


@dataclass
class Presentations:
    """One subject's trials in presentation order (sessions, then runs, then lines).

    ``names`` (n,) image names; ``session`` / ``run`` (n,) 1-based, runs numbered across sessions;
    ``list_file`` (n,) index into ``files``, the run lists read; ``rep_marked`` entries with ``rep_``."""

    names: list[str]
    session: np.ndarray
    run: np.ndarray
    list_file: np.ndarray
    files: list[Path]
    rep_marked: int


def read_presentations(folder: Path) -> Presentations:
    """The run lists ``<folder>/<CSIk_sessNN>/*.txt``: session folders and run files in natural
    order, one image name per non-empty line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: presentation lists not found (expected {LISTS_DIR}/<CSIk>/<CSIk_sessNN>/*.txt)")
    names, session, run, list_file, files, marked = [], [], [], [], [], 0
    sessions = sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name))
    for s, sess in enumerate(sessions, 1):
        for path in sorted(sess.glob("*.txt"), key=lambda p: natural_key(p.name)):
            entries = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            bad = [e for e in entries if len(e.split()) != 1]
            if bad:
                raise InputError(f"{path}: line {bad[0]!r} is not one image name (expected one name per line)")
            files.append(path)
            marked += sum(e.startswith(REPEAT_PREFIX) for e in entries)
            names += [stimulus_name(e) for e in entries]
            session += [s] * len(entries)
            run += [len(files)] * len(entries)
            list_file += [len(files) - 1] * len(entries)
    if not names:
        raise InputError(f"{folder}: no trials (expected session folders <CSIk_sessNN> holding run lists *.txt)")
    as_int = lambda x: np.asarray(x, dtype=np.int64)
    return Presentations(names, as_int(session), as_int(run), as_int(list_file), files, marked)


def read_repeated(path: Path) -> list[str]:
    """The repeated images' names (``repeated_stimuli_113_list.txt``), in file order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: the list of repeated (test) images is missing")
    names = [stimulus_name(ln) for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if not names:
        raise InputError(f"{path}: no image names (expected one repeated image per line)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"{path}: image {twice[0]} is listed twice")
    return names


def image_index(folder: Path) -> dict[str, Path]:
    """Image name (file stem) → file, over every image file below ``Presented_Stimuli``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder of the presented images not found (expected {PRESENTED_DIR}/"
                         "{COCO,ImageNet,Scene}/)")  # fmt: skip
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            other = out.setdefault(path.stem, path)
            if other != path:
                raise InputError(f"{path}: image name {path.stem} also names {other}; names must be unique")
    return out


def roi_files(betas_dir: Path, csi: str, beta_type: str = BETA_TYPE) -> dict[str, Path]:
    """Label (``LHEarlyVis`` ...) → file, for the subject's ROI beta files that exist."""
    return {label: p for label in LABELS if (p := beta_file(betas_dir, csi, label, beta_type)).is_file()}


def missing_hemisphere(found: dict[str, Path], betas_dir: Path, csi: str, beta_type: str = BETA_TYPE) -> str | None:
    """One line naming the first hemisphere file whose twin exists but which does not; else None."""
    for area in AREAS:
        have = [h for h in HEMIS if f"{h}{area}" in found]
        if len(have) == 1:
            other = "RH" if have[0] == "LH" else "LH"
            return (f"{beta_file(betas_dir, csi, other + area, beta_type)}: missing hemisphere file (its twin "
                    f"{found[have[0] + area].name} is there; each ROI needs its LH and RH file)")  # fmt: skip
    return None


def roi_definitions(labels) -> dict[str, list[str]]:
    """ROI name → the per-hemisphere labels it unites, for the ``labels`` present: each label, each
    area with both hemispheres (``EarlyVis`` = ``LHEarlyVis`` ∪ ``RHEarlyVis``), and ``VC`` when
    all ten files are there."""
    labels = set(labels)
    present = [lab for lab in LABELS if lab in labels]
    out = {lab: [lab] for lab in present}
    for area in AREAS:
        if all(f"{h}{area}" in out for h in HEMIS):
            out[area] = [f"{h}{area}" for h in HEMIS]
    if len(present) == len(LABELS):
        out[ALL_AREAS] = list(LABELS)
    return out


def load_betas(path: Path, n_trials: int, lists: Path) -> np.ndarray:
    """(trials, voxels) float32 of one ROI file, checked against the presentation lists' trial count."""
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable numeric .npy array ({exc})") from None
    if x.ndim != 2 or x.dtype.kind not in "fiu":
        raise InputError(f"{path}: array of shape {x.shape} and dtype {x.dtype}, expected (trials, voxels) numbers")
    if x.shape[0] != n_trials:
        raise InputError(f"{path}: {x.shape[0]} rows, but the presentation lists in {lists} give {n_trials} "
                         "trials (one row per trial expected)")  # fmt: skip
    return np.asarray(x, dtype=np.float32)


# -- release 1 -----------------------------------------------------------------------------------


def roi_mat_file(root: Path, csi: str, tr: int = DEFAULT_TR) -> Path:
    """``<root>/ROIs/CSI1/mat/CSI1_ROIs_TR34.mat``."""
    return Path(root) / RELEASE1_DIR / csi / "mat" / f"{csi}_ROIs_TR{tr}.mat"


def stim_list_file(root: Path, csi: str) -> Path:
    """``<root>/ROIs/stim_lists/CSI01_stim_lists.txt`` (the subject number zero-padded, as published)."""
    return Path(root) / STIM_LISTS_DIR / f"CSI{int(csi[3:]):02d}_stim_lists.txt"


def read_stim_list(path: Path) -> Presentations:
    """A release-1 stim list: one image file name per non-empty line, line i = row i of every ROI
    variable; ``rep_`` marks a repeat. Release 1 records no sessions or runs: every trial has
    session 1 and run 1."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: release 1 stim list not found (expected {STIM_LISTS_DIR}/CSI0k_stim_lists.txt)")
    entries = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    bad = [e for e in entries if len(e.split()) != 1]
    if bad:
        raise InputError(f"{path}: line {bad[0]!r} is not one image name (expected one name per line)")
    if not entries:
        raise InputError(f"{path}: no trials (expected one image name per line)")
    ones = np.ones(len(entries), dtype=np.int64)
    return Presentations([stimulus_name(e) for e in entries], ones, ones.copy(), ones * 0, [path],
                         sum(e.startswith(REPEAT_PREFIX) for e in entries))  # fmt: skip


def _open_mat(path: Path, what):
    """``scipy.io.loadmat`` (``what`` = variable names) or ``whosmat`` (``what`` = None), with every
    failure as one line naming the file."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found (expected release 1's {RELEASE1_DIR}/CSIk/mat/CSIk_ROIs_TR<tr>.mat)")
    try:
        if what is None:
            return scipy.io.whosmat(str(path))
        return scipy.io.loadmat(str(path), variable_names=list(what), squeeze_me=False, mat_dtype=False)
    except NotImplementedError:
        raise InputError(f"{path}: a MATLAB v7.3 (HDF5) file; release 1's ROI files are MATLAB v5 files "
                         "(read with scipy.io.loadmat), so this is not one of them") from None  # fmt: skip
    except (ValueError, TypeError, OSError, EOFError, KeyError, IndexError, NameError, MatReadError) as exc:  # bad file
        message = " ".join(str(exc).split())[:200]
        raise InputError(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {message})") from None


def mat_variables(path: Path) -> list[str]:
    """The variable names in a ``.mat`` file's headers (no array is read)."""
    return [name for name, _shape, _cls in _open_mat(path, None)]


def load_roi_mat(path: Path, n_trials: int, stim_list: Path) -> dict[str, np.ndarray]:
    """Label (``LHEarlyVis`` … ``RHRSC``) → (trials, voxels) float32 from a release-1 ROI file: all
    ten variables must be there, each a 2-D numeric array with one row per stim-list line."""
    mat = _open_mat(path, LABELS)
    missing = [lab for lab in LABELS if lab not in mat]
    if missing:
        found = [lab for lab in LABELS if lab in mat]
        raise InputError(f"{path}: ROI variable {missing[0]} missing ({len(missing)} of the ten LHEarlyVis … RHRSC "
                         f"absent; found {found})")  # fmt: skip
    out = {}
    for label in LABELS:
        x = mat[label]
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype.kind not in "fiu":
            shape, dtype = getattr(x, "shape", "?"), getattr(x, "dtype", type(x).__name__)
            raise InputError(f"{path}: variable {label} is an array of shape {shape} and dtype {dtype}, expected "
                             "(trials, voxels) numbers")  # fmt: skip
        if x.shape[0] != n_trials:
            raise InputError(f"{path}: variable {label} has {x.shape[0]} rows, but the stim list {stim_list} gives "
                             f"{n_trials} trials (one row per trial expected)")  # fmt: skip
        out[label] = np.asarray(x, dtype=np.float32)
    return out
