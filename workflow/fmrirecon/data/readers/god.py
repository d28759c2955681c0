"""Generic Object Decoding (GOD) subjects: the BData ``SubjectN.h5`` files and the npz twin.

- :func:`read_god_bdata` reads Kamitani-lab BData files (datasets.md §1.4-1.6). Every column is
  located through the metadata, never by position; images are matched by stimulus id
  (``round(id * 1e6)``), not by the file's own ``image_index`` (wrong in old GOD versions).
- :func:`read_god_npz` reads the Weizmann/MinD-Vis ``sbj_N.npz`` derivative (§1.7): already
  normalised, aligned to the image order, perception data only.

Both return a :class:`~fmrirecon.data.readers.base.SubjectRecording` whose ``image_index``
points into the rows of the given :class:`~fmrirecon.data.readers.base.StimulusSet`.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..bdata import BDataFile
from .base import IMAGERY, TEST, TRAIN, StimulusSet, SubjectRecording
from .images import find_stimulus_rows, stimulus_id_from_name, stimulus_id_key

#: Sample label keys, in order of preference (``Label`` in the old .mat-derived files).
LABEL_KEYS = ("stimulus_id", "Label", "stimulus_name")

_SPLIT_NAMES = {TRAIN: "training", TEST: "test", IMAGERY: "test (by category)"}


# -- BData ---------------------------------------------------------------------------------------


def _single_column(bd: BDataFile, key: str) -> np.ndarray:
    """(n_samples,) float64 of a one-column key; InputError if it spans several columns."""
    x = bd.select(key)
    if x.shape[1] != 1:
        raise InputError(f"{bd.path}: key {key!r} flags {x.shape[1]} dataset columns, expected 1")
    return x[:, 0]


def _integer_column(bd: BDataFile, key: str, allowed=None) -> np.ndarray:
    x = _single_column(bd, key)
    bad = ~np.isfinite(x) | (x != np.round(x))
    if allowed is not None:
        bad |= ~np.isin(x, allowed)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        expected = f"one of {list(allowed)}" if allowed is not None else "an integer"
        raise InputError(f"{bd.path}: {key} of sample {i} is {float(x[i])!r}, expected {expected}")
    return x.astype(np.int64)


def _image_index(label: np.ndarray, datatype: np.ndarray, stimuli: StimulusSet,
                 path: Path) -> np.ndarray:
    """(n_samples,) row in ``stimuli.train`` (DataType 1) or ``stimuli.test`` (2; 3 by category)."""
    index = np.full(len(label), -1, dtype=np.int64)
    for dtype, split in ((TRAIN, stimuli.train), (TEST, stimuli.test)):
        sel = datatype == dtype
        index[sel] = find_stimulus_rows(label[sel], split.stimulus_id)
    sel = datatype == IMAGERY
    if sel.any():  # imagery samples carry category ids: the test image of that category
        wanted = stimulus_id_key(label[sel]) // 1_000_000
        lookup: dict[int, int] = {}
        for row, cat in enumerate(np.asarray(stimuli.test.category).tolist()):
            lookup.setdefault(int(cat), row)
        index[sel] = [lookup.get(int(c), -1) if c >= 0 else -1 for c in wanted.tolist()]
    missing = np.flatnonzero(index < 0)
    if len(missing):
        i = int(missing[0])
        raise InputError(
            f"stimulus id {float(label[i])!r} (DataType {int(datatype[i])}, sample {i}) of {path} has no "
            f"image in the {_SPLIT_NAMES[int(datatype[i])]} image list of {stimuli.source} "
            f"({len(missing)} samples unmatched)")
    return index


def _file_index_mismatches(bd: BDataFile, datatype: np.ndarray, index: np.ndarray) -> int | None:
    """Cross-check the file's own ``image_index`` column (1- or 0-based) on DataType 1 and 2."""
    if "image_index" not in bd:
        return None
    try:
        own = _single_column(bd, "image_index")
    except InputError:
        return None
    sel = np.isin(datatype, (TRAIN, TEST)) & np.isfinite(own)
    return int(min(np.sum(own[sel] - base != index[sel]) for base in (0, 1)))


def unique_runs(datatype: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, bool]:
    """Make run numbers unique across data types.

    If a run number occurs under two DataTypes, runs are renumbered 1..K over the sorted
    (DataType, Run) pairs (so their order is kept). Returns (run, renumbered).
    """
    shared = any(len(np.unique(datatype[run == r])) > 1 for r in np.unique(run))
    if not shared:
        return run, False
    _, inverse = np.unique(np.stack([datatype, run], axis=1), axis=0, return_inverse=True)
    return inverse.ravel().astype(np.int64) + 1, True


def _rois(bd: BDataFile) -> dict[str, np.ndarray]:
    """``ROI_*`` flags over the voxel columns, prefix stripped; ``hV4`` also exposed as ``V4``."""
    rois = {}
    for key in bd.keys:
        if key.startswith("ROI_"):
            rois[key[4:]] = bd.get_metadata(key, where="VoxelData") == 1
    if "hV4" in rois and "V4" not in rois:
        rois["V4"] = rois["hV4"]
    return rois


def read_god_bdata(subject_file, stimuli: StimulusSet, unlabeled_file=None) -> SubjectRecording:
    """Read a GOD BData subject file (``SubjectN.h5``, or the fMRIPrep ``*_ImageNet*.h5``).

    Keys used: ``VoxelData``, ``DataType`` (1/2/3), ``Run``, ``stimulus_id`` (or ``Label``, or
    ``stimulus_name`` decoded through its vmap),
    ``voxel_x/y/z`` (NaN if absent), ``ROI_*``. ``unlabeled_file`` is an optional BData file with
    the same number of VoxelData columns whose samples become ``SubjectRecording.unlabeled``.
    """
    path = Path(subject_file)
    bd = BDataFile.open(path)
    fmri = bd.select("VoxelData")
    if fmri.shape[1] == 0:
        raise InputError(f"{path}: VoxelData flags no dataset columns")
    datatype = _integer_column(bd, "DataType", allowed=(TRAIN, TEST, IMAGERY))
    run, renumbered = unique_runs(datatype, _integer_column(bd, "Run"))
    label_key = next((k for k in LABEL_KEYS if k in bd), None)
    if label_key is None:
        raise InputError(f"{path}: no stimulus label key (expected one of "
                         f"{', '.join(LABEL_KEYS)}); keys: {', '.join(bd.keys)}")
    label = _single_column(bd, label_key)
    if label_key == "stimulus_name":  # values are codes; names via the vmap (cookbook files)
        names = bd.vmap(label_key)
        label = np.array([stimulus_id_from_name(names.get(v, "")) for v in label.tolist()])
    for dtype, what in ((TRAIN, "training"), (TEST, "test")):
        if not (datatype == dtype).any():
            raise InputError(f"{path}: no {what} samples (DataType {dtype}); a GOD subject file holds training "
                             f"(1) and test (2) samples, found DataType values {sorted(set(datatype.tolist()))}")  # fmt: skip
    image_index = _image_index(label, datatype, stimuli, path)
    voxel_xyz = np.stack([bd.get_metadata(f"voxel_{a}", where="VoxelData") if f"voxel_{a}" in bd
                          else np.full(fmri.shape[1], np.nan) for a in "xyz"], axis=1)
    unlabeled = unlabeled_run = None
    if unlabeled_file is not None:
        pool_file = BDataFile.open(unlabeled_file)
        pool = pool_file.select("VoxelData")
        if pool.shape[1] != fmri.shape[1]:
            raise InputError(f"{unlabeled_file}: VoxelData has {pool.shape[1]} voxels, expected "
                             f"{fmri.shape[1]} as in {path}")
        unlabeled = pool.astype(np.float32)
        if "Run" in pool_file:
            unlabeled_run = pool_file.select("Run")[:, 0].astype(np.int64)
    return SubjectRecording(
        fmri=fmri.astype(np.float32), datatype=datatype, run=run, image_index=image_index,
        voxel_xyz=voxel_xyz, rois=_rois(bd), source=path, unlabeled=unlabeled,
        unlabeled_run=unlabeled_run,
        attrs={"format": "god_bdata", "keys": list(bd.keys), "label_key": label_key,
               "run_renumbered": renumbered,
               "file_image_index_mismatches": _file_index_mismatches(bd, datatype, image_index),
               "unlabeled_source": str(unlabeled_file) if unlabeled_file is not None else None})


# -- npz -----------------------------------------------------------------------------------------

_ARR = re.compile(r"arr_\d+")


def _labels(x: np.ndarray, key: str, n_rows: int, n_images: int, path: Path) -> np.ndarray:
    """Integer labels (n_rows,) in [0, n_images)."""
    x = np.asarray(x).ravel()
    if len(x) != n_rows:
        raise InputError(f"{path}: {key} has {len(x)} labels for {n_rows} fMRI rows")
    if x.dtype.kind == "f" and (~np.isfinite(x) | (x != np.round(x))).any():
        raise InputError(f"{path}: {key} labels must be integer image indices")
    if x.dtype.kind not in "iuf":
        raise InputError(f"{path}: {key} has dtype {x.dtype}, expected integer image indices")
    x = x.astype(np.int64)
    if len(x) and (x.min() < 0 or x.max() >= n_images):
        raise InputError(f"{path}: {key} labels span {x.min()}..{x.max()}, expected 0.."
                         f"{n_images - 1} (the stimulus set has {n_images} images)")
    return x


def _roi_mask(x: np.ndarray, key: str, n_voxels: int, path: Path) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != (n_voxels,):
        raise InputError(f"{path}: ROI mask {key!r} has shape {x.shape}, expected ({n_voxels},)")
    if x.dtype != bool and not (x.dtype.kind in "iuf" and np.isin(x, (0, 1)).all()):
        raise InputError(f"{path}: ROI mask {key!r} has dtype {x.dtype} and is not 0/1")
    return x.astype(bool)


def _test_average_check(single: np.ndarray, labels: np.ndarray, avg) -> dict:
    """Compare ``arr_2`` with the per-label mean of ``arr_1`` (recorded, never fatal)."""
    if avg is None:
        return {"test_avg_matches": None}
    avg = np.asarray(avg, dtype=np.float64)
    uniq = np.unique(labels)
    if avg.ndim != 2 or avg.shape[1] != single.shape[1] or (len(uniq) and uniq.max() >= len(avg)):
        return {"test_avg_matches": False, "test_avg_shape": list(avg.shape)}
    means = np.stack([single[labels == u].mean(axis=0) for u in uniq]) if len(uniq) else avg[:0]
    diff = float(np.abs(means - avg[uniq]).max()) if len(uniq) else 0.0
    tol = 1e-4 + 1e-3 * float(np.abs(single).max(initial=0.0))
    return {"test_avg_matches": bool(diff <= tol), "test_avg_max_abs_diff": diff}


def read_god_npz(sbj_file, stimuli: StimulusSet) -> SubjectRecording:
    """Read a Weizmann/MinD-Vis ``sbj_N.npz`` (keys ``arr_0``..``arr_6`` + bool ROI masks).

    Rows: ``arr_0`` training samples (DataType 1, image ``arr_3``) then ``arr_1`` test single
    trials (DataType 2, image ``arr_4``). Runs are unknown (0); the data are prenormalised.
    """
    path = Path(sbj_file)
    if not path.is_file():
        raise InputError(f"subject npz not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is not a readable .npz file (corrupt or truncated?): "
                         f"{exc}") from exc
    for key in ("arr_0", "arr_1", "arr_3", "arr_4"):
        if key not in arrays:
            raise InputError(f"{path}: key {key!r} missing (keys: {', '.join(arrays)}); expected "
                             f"the sbj_N.npz layout arr_0..arr_6 + ROI masks")
    train, test = arrays["arr_0"], arrays["arr_1"]
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise InputError(f"{path}: arr_0 {train.shape} and arr_1 {test.shape} must be "
                         f"(n, V) with the same V")
    n_voxels = train.shape[1]
    train_idx = _labels(arrays["arr_3"], "arr_3", len(train), len(stimuli.train), path)
    test_idx = _labels(arrays["arr_4"], "arr_4", len(test), len(stimuli.test), path)
    rois = {k: _roi_mask(v, k, n_voxels, path) for k, v in arrays.items() if not _ARR.fullmatch(k)}
    noise_ceiling = arrays.get("arr_5")
    if noise_ceiling is not None:
        noise_ceiling = noise_ceiling.astype(np.float64).ravel()
        if len(noise_ceiling) != n_voxels:
            raise InputError(f"{path}: arr_5 (noise ceiling) has {len(noise_ceiling)} values "
                             f"for {n_voxels} voxels")
    n = len(train) + len(test)
    attrs = {"format": "god_npz", "keys": sorted(arrays),
             **_test_average_check(test.astype(np.float64), test_idx, arrays.get("arr_2"))}
    return SubjectRecording(
        fmri=np.concatenate([train, test]).astype(np.float32),
        datatype=np.repeat(np.array([TRAIN, TEST], dtype=np.int64), [len(train), len(test)]),
        run=np.zeros(n, dtype=np.int64), image_index=np.concatenate([train_idx, test_idx]),
        voxel_xyz=np.full((n_voxels, 3), np.nan), rois=rois, source=path,
        noise_ceiling=noise_ceiling, prenormalized=True, attrs=attrs)
