"""The HCP derivative MinD-Vis and CAD pretrain on: ``npz/<subject>/HCP_visual_voxel.npz``.

Written by ``vis_dec_neurips/data/HCP/preprocess_hcp.py`` from each subject's
``rfMRI_REST1_LR_Atlas_MSMAll_hp2000_clean.dtseries.nii``: the grayordinates of HCP-MMP1.0 parcels
V1, V2, V3 and V4 (both hemispheres), each z-scored over time, one array per area::

    <path>/npz/<subject>/HCP_visual_voxel.npz    keys V1, V2, V3, V4: (1200 TRs, n_vox) float

MinD-Vis' ``roi='VC'`` concatenates V1|V2|V3|V4 in that order (``rois`` of the pool entry). Every
subject is in the same grayordinate space (fs_LR 32k), so the areas have the same size in every
file; a file that differs is refused. Arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError

NAME = "hcp_npz"
FILE = "HCP_visual_voxel.npz"
#: the areas MinD-Vis' 'VC' concatenates, in its order
AREAS = ("V1", "V2", "V3", "V4")


def subject_file(root: str | Path, subject: str) -> str:
    return f"{root}/npz/{subject}/{FILE}"


def find_subjects(root: str | Path) -> list[str]:
    """Subject folders of ``root/npz`` that hold the file, sorted by name."""
    return sorted(p.parent.name for p in Path(root, "npz").glob(f"*/{FILE}"))


def read_subject(path: str | Path, rois=AREAS) -> tuple[np.ndarray, dict[str, int]]:
    """``rois`` of one file concatenated along voxels: ((T, V) float64, {roi: n_vox}).

    Raises:
        InputError: one line naming the file and what was expected (missing key, not 2-D,
            different TR counts between areas, non-finite values, an object array).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [r for r in rois if r not in npz.files]
            if missing:
                raise InputError(f"{path}: no key {missing[0]!r} (expected keys {', '.join(rois)}, each "
                                 f"(TRs, voxels); the file has {sorted(npz.files)})")  # fmt: skip
            arrays = {r: npz[r] for r in rois}
    except (ValueError, OSError) as exc:  # an object (pickled) array, or not an npz file
        raise InputError(f"{path}: not a numeric npz file ({exc})") from None
    counts = {}
    for r, a in arrays.items():
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
            raise InputError(f"{path}: key {r!r} has shape {a.shape} ({a.dtype}), expected (TRs, voxels) numbers")
        counts[r] = int(a.shape[1])
    trs = {r: a.shape[0] for r, a in arrays.items()}
    if len(set(trs.values())) > 1:
        raise InputError(f"{path}: the areas have different TR counts {trs}; expected one time axis")
    x = np.concatenate([np.asarray(arrays[r], np.float64) for r in rois], axis=1)
    if not np.isfinite(x).all():
        raise InputError(f"{path}: {int((~np.isfinite(x)).sum())} non-finite values in {', '.join(rois)}")
    return x, counts
