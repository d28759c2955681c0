"""ROI masking and normalisation: a ``SubjectRecording`` → one prepared file per ROI.

ROIs come from the file's own ``ROI_<name>`` columns (GOD ships V1…PPA, LVC, HVC, VC), from
unions defined in the config (``rois:``), or, for volumetric sources, from a NIfTI label volume
applied with nilearn at the voxel coordinates.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import InputError
from .prepared import PreparedSubject
from .readers.base import IMAGERY, TEST, TRAIN, SubjectRecording

log = logging.getLogger(__name__)

def resolve_roi(recording: SubjectRecording, roi: str, composites: dict[str, list[str]]) -> np.ndarray:
    """Boolean voxel mask (V,) of ``roi``: the file's own column first, else a config union."""
    src = recording.source
    if roi in recording.rois:
        mask = np.asarray(recording.rois[roi], bool)
        _compare_with_union(recording, roi, mask, composites)
    elif roi in composites:
        missing = [p for p in composites[roi] if p not in recording.rois]
        if missing:
            raise InputError(
                f"{src}: ROI {roi} = union of {composites[roi]} but ROI column(s) {missing} are "
                f"missing (available: {sorted(recording.rois)})"
            )
        mask = np.logical_or.reduce([np.asarray(recording.rois[p], bool) for p in composites[roi]])
    else:
        raise InputError(
            f"{src}: ROI {roi!r} not found: no ROI_{roi} column (available: {sorted(recording.rois)}) "
            f"and no union named {roi!r} in config rois (defined: {sorted(composites)})"
        )
    if mask.shape != (recording.n_voxels,):
        raise InputError(f"{src}: ROI {roi} mask has shape {mask.shape}, expected ({recording.n_voxels},)")
    if not mask.any():
        raise InputError(f"{src}: ROI {roi} is empty (0 voxels selected)")
    return mask


def _compare_with_union(recording: SubjectRecording, roi: str, mask: np.ndarray, composites: dict) -> None:
    """The file's own column is used; say so when it disagrees with the config's union of its parts
    (or a part is empty), since the papers define e.g. HVC as that union."""
    parts = [p for p in composites.get(roi, []) if p in recording.rois]
    if not parts or len(parts) < len(composites[roi]):
        return
    flags = [np.asarray(recording.rois[p], bool) for p in parts]
    empty = [p for p, f in zip(parts, flags) if not f.any()]
    union = np.logical_or.reduce(flags)
    if empty or (union != mask).any():
        log.warning(
            "%s: ROI_%s (%d voxels) is used as the file defines it, but the union of %s has %d voxels "
            "(%d differ)%s", recording.source, roi, int(mask.sum()), parts, int(union.sum()),
            int((union != mask).sum()), f"; empty: {empty}" if empty else "",
        )  # fmt: skip


def rois_from_nifti(label_volume: Path, labels_tsv: Path, voxel_xyz: np.ndarray) -> dict[str, np.ndarray]:
    """ROI flags (V,) per label name, from a NIfTI label volume at the voxels' mm coordinates.

    The volume is loaded with nilearn; each voxel's world coordinate is mapped to a volume index
    with the inverse affine (``nilearn.image.coord_transform``).
    """
    from nilearn import image

    for p in (label_volume, labels_tsv):
        if not Path(p).exists():
            raise InputError(f"{p}: ROI label file not found")
    try:
        img = image.load_img(str(label_volume))
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise InputError(f"{label_volume}: cannot read NIfTI label volume ({exc})") from exc
    if not np.isfinite(voxel_xyz).all():
        raise InputError(f"{label_volume}: voxel coordinates are missing, cannot apply a NIfTI mask")
    data = np.asarray(img.get_fdata(), dtype=np.int64)
    inv = np.linalg.inv(img.affine)
    i, j, k = image.coord_transform(voxel_xyz[:, 0], voxel_xyz[:, 1], voxel_xyz[:, 2], inv)
    ijk = np.rint(np.stack([i, j, k], 1)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(data.shape[:3])), axis=1)
    labels = np.zeros(len(ijk), np.int64)
    labels[inside] = data[tuple(ijk[inside].T)]
    rows = [ln.split("\t") for ln in Path(labels_tsv).read_text().splitlines()[1:] if ln.strip()]
    return {name.strip(): labels == int(idx) for idx, name in rows}


#: columns per float64 block when normalising (bounds the float64 temporaries to ~rows x 2048 x 8 B)
_BLOCK = 2048


def column_stats(x: np.ndarray, rows: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel mean and sd (float64) of ``x[rows]``, a block of columns at a time (the same sums
    as over the whole float64 copy, without holding it)."""
    mean, sd = np.empty(x.shape[1]), np.empty(x.shape[1])
    for a in range(0, x.shape[1], _BLOCK):
        blk = x[rows, a : a + _BLOCK].astype(np.float64)
        mean[a : a + _BLOCK], sd[a : a + _BLOCK] = blk.mean(0), blk.std(0, ddof=ddof)
    return mean, sd


def normalise(fmri: np.ndarray, run: np.ndarray, train: np.ndarray, mode: str, out: np.ndarray | None = None) -> np.ndarray:
    """Normalise samples × voxels (float64 arithmetic, float32 result).

    ``run``: z-score each voxel within each run (each run's own statistics; no labels involved).
    ``train``: z-score with the per-voxel mean and sd (ddof=1) of the ``train`` rows only.
    ``none``: return a float32 copy.
    ``out``: a float32 array of ``fmri``'s shape to write into (may be ``fmri`` itself: in place);
    only one run or one block of columns is ever held in float64.
    """
    if mode not in ("run", "train", "none"):
        raise InputError(f"normalization {mode!r} is not one of run, train, none")
    if out is None:
        out = np.empty(fmri.shape, np.float32)
    if mode == "run":
        for r in np.unique(run):
            idx = np.flatnonzero(run == r)
            x = fmri[idx].astype(np.float64)
            sd = x.std(0)
            out[idx] = ((x - x.mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
    elif mode == "train":
        mu, sd = column_stats(fmri, np.flatnonzero(train))
        sd = np.where(sd > 0, sd, 1.0)
        for a in range(0, fmri.shape[1], _BLOCK):
            cols = slice(a, a + _BLOCK)
            out[:, cols] = ((fmri[:, cols].astype(np.float64) - mu[cols]) / sd[cols]).astype(np.float32)
    elif out is not fmri:
        out[...] = fmri
    return out


def _average(fmri: np.ndarray, image_index: np.ndarray):
    ids = np.unique(image_index)
    avg = np.stack([fmri[image_index == i].mean(0) for i in ids]).astype(np.float32)
    return avg, ids


def prepare_subject(
    recording: SubjectRecording,
    roi: str,
    composites: dict[str, list[str]],
    normalization: str,
    n_test_images: int,
    roi_flags: dict[str, np.ndarray] | None = None,
    roster: tuple[str, ...] = (),
    consume: bool = False,
) -> PreparedSubject:
    """Select the ROI's voxels, check them, normalise, and split into train / test / imagery.

    ``roi_flags`` replaces the recording's own ROI columns (e.g. flags from a NIfTI volume).
    ``roster`` is the format's atomic ROIs (its reader's ``rois``): the prepared file records each
    voxel's membership in those of them the recording has. ``consume``: drop ``recording.fmri``
    once the ROI's columns are copied out (rule ``mask_roi``: the recording is not used again), so
    that a large subject is held about twice (ROI samples + the split groups), not seven times.
    With ``recording.train_repeats == "average"`` the training rows are averaged per image after
    normalising (each trial z-scored with its own run's statistics first).
    """
    src = recording.source
    if roi_flags is not None:
        recording.rois = roi_flags
    mask = resolve_roi(recording, roi, composites)
    x = np.ascontiguousarray(recording.fmri[:, mask], np.float32)  # a copy: normalised in place below
    if consume:
        recording.fmri = None
    if not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        rows, cols = np.nonzero(bad)
        raise InputError(
            f"{src}: {int(bad.sum())} NaN/Inf values in {len(np.unique(cols))} of the {x.shape[1]} "
            f"voxels of ROI {roi} (first at sample {rows[0]}, ROI voxel {cols[0]}); expected finite values"
        )
    dt, run, idx = recording.datatype, recording.run, recording.image_index
    train, test, imag = dt == TRAIN, dt == TEST, dt == IMAGERY
    if not train.any() or not test.any():
        raise InputError(
            f"{src}: expected training (DataType 1) and test (DataType 2) samples, "
            f"found {int(train.sum())} and {int(test.sum())}"
        )
    if (idx[train | test] < 0).any():
        raise InputError(f"{src}: {int((idx[train | test] < 0).sum())} samples have no image index")
    missing = sorted(set(range(n_test_images)) - set(idx[test].tolist()))
    if missing:
        raise InputError(
            f"{src}: {len(missing)} of the {n_test_images} test images have no test trials "
            f"(first: test image row {missing[0]}); trial and image counts disagree"
        )
    train_mean, train_std = column_stats(x, np.flatnonzero(train))  # raw statistics, before normalising
    mode = "none" if recording.prenormalized else normalization
    if recording.prenormalized and normalization != "none":
        log.info("%s is already normalised by its provider; normalization=%s not applied", src, normalization)
    z = normalise(x, run, train, mode, out=x)

    if recording.train_repeats == "average":
        avg, ids = _average(z[train], idx[train])
        groups = {"train": {"fmri": avg, "image_index": ids.astype(np.int64), "run": np.zeros(len(ids), np.int64)}}
    else:
        groups = {"train": {"fmri": z[train], "image_index": idx[train].astype(np.int64), "run": run[train]}}
    for name, sel in (("test", test), ("imagery", imag)):
        if sel.any():
            avg, ids = _average(z[sel], idx[sel])
            groups[name] = {
                "fmri": avg, "image_index": ids.astype(np.int64), "fmri_trials": z[sel],
                "trial_image_index": idx[sel].astype(np.int64), "trial_run": run[sel],
            }  # fmt: skip
    del x, z
    if recording.unlabeled is not None:
        u = recording.unlabeled[:, mask]
        if not np.isfinite(u).all():
            raise InputError(f"{src}: NaN/Inf values in the unlabeled fMRI of ROI {roi}")
        u_mode = "none" if recording.prenormalized else normalization
        if u_mode == "train":
            u = (u - train_mean) / np.where(train_std > 0, train_std, 1)
        elif u_mode == "run":
            u_run = recording.unlabeled_run
            u_run = np.zeros(len(u), int) if u_run is None else u_run
            u = normalise(u, u_run, np.ones(len(u), bool), "run")
        groups["unlabeled"] = {"fmri": np.asarray(u, np.float32)}
    atomic = [r for r in roster if r in recording.rois]
    voxels = {
        "source_index": np.flatnonzero(mask),  # VoxelData column of each voxel in the source
        "xyz": recording.voxel_xyz[mask].astype(np.float64),
        "roi_names": np.array(atomic, dtype="S"),
        "roi_membership": np.array([np.asarray(recording.rois[r], bool)[mask] for r in atomic]).reshape(len(atomic), int(mask.sum())),
    }  # fmt: skip
    if recording.noise_ceiling is not None:
        voxels["noise_ceiling"] = np.asarray(recording.noise_ceiling)[mask].astype(np.float64)
    groups["voxels"] = voxels
    groups["normalization"] = {"train_mean": train_mean, "train_std": train_std}
    attrs = {"roi": roi, "normalization": mode, "n_voxels": int(mask.sum()), "train_repeats": recording.train_repeats}
    return PreparedSubject(groups, attrs)
