"""Write arrays in the Natural Scenes Dataset's published AWS layout (datasets.md §2).

:func:`write_nsd_tree` is a pure writer: it takes the images, the experimental design, each
subject's trial betas on a voxel grid and its ROI label volumes, and writes them where and how
NSD publishes them. It draws nothing and simulates nothing; the reader tests use it for tiny
trees and the simulator for a tiny NSD stand-in. What it writes, under ``root``::

    nsddata/experiments/nsd/nsd_expdesign.mat          masterordering (1, n_trials), subjectim
                                                       (n_subjects, n_images), sharedix (1, n_shared),
                                                       stimpattern (n_sessions, n_runs, n_slots) 0/1
    nsddata/experiments/nsd/nsd_stim_info_merged.csv   nsdId, shared1000, subjectK, subjectK_repR
    nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5       imgBrick (n_images, H, W, 3) uint8
    nsddata_betas/ppdata/subjAA/func1pt8mm/<version>/betas_sessionNN.nii.gz   (X, Y, Z, T) int16
    nsddata_betas/ppdata/subjAA/func1pt8mm/<version>/betas_sessionNN.hdf5     betas (T, Z, Y, X) int16
    nsddata_betas/ppdata/subjAA/func1pt8mm/<version>/ncsnr.nii.gz             (optional)
    nsddata/ppdata/subjAA/func1pt8mm/roi/<atlas>.nii.gz                       (X, Y, Z) -1/0/k
    nsddata/freesurfer/{subjAA,fsaverage}/label/<atlas>.mgz.ctab             "k name" lines
    nsddata/ppdata/subjAA/behav/responses.tsv                                 one row per trial

Betas are stored as NSD stores them: int16 = % signal change × 300 (float input is multiplied by
300 and rounded; int16 input is written as given). Session ``s`` of a subject holds global
trials ``[(s-1)·T, s·T)`` of ``masterordering`` (T = ``trials_per_session``), split into
``runs_per_session`` runs. The behavioural columns of ``responses.tsv`` that the design does not
determine (RT, BUTTON, ...) are written empty (NaN); ``ISOLD`` follows from the design.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io

DEFAULT_BETA_VERSION = "betas_fithrf_GLMdenoise_RR"
RESPONSE_COLUMNS = ("SUBJECT", "SESSION", "RUN", "TRIAL", "TIME", "ISOLD", "ISCORRECT", "RT", "CHANGEMIND",
                    "MEMORYRECENT", "MEMORYFIRST", "ISOLDCURRENT", "ISCORRECTCURRENT", "TOTAL1", "TOTAL2",
                    "BUTTON", "MISSINGDATA", "73KID", "10KID")  # fmt: skip


def subject_folder(n: int) -> str:
    return f"subj{n:02d}"


def _run_lengths(trials_per_session: int, runs: int) -> list[int]:
    """Trials per run, as even as possible (NSD: 750 over 12 runs = 63 and 62)."""
    base, extra = divmod(trials_per_session, runs)
    return [base + (r < extra) for r in range(runs)]


def _stimpattern(n_sessions: int, lengths: list[int]) -> np.ndarray:
    """(n_sessions, n_runs, n_slots) 0/1: a run's stimulus trials first, blank slots after."""
    slots = max(lengths) + max(1, max(lengths) // 5)
    pattern = np.zeros((n_sessions, len(lengths), slots), np.uint8)
    for r, n in enumerate(lengths):
        pattern[:, r, :n] = 1
    return pattern


def _savemat(path: Path, arrays: dict) -> None:
    """``scipy.io.savemat`` (MATLAB 5) with a fixed header text: scipy stamps the creation time
    there, and the same inputs should give the same bytes."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, arrays, do_compression=True)
    data = bytearray(buf.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, Platform: posix, Created by fmrirecon".ljust(116)
    path.write_bytes(bytes(data))


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def _as_int16(betas: np.ndarray) -> np.ndarray:
    if betas.dtype == np.int16:
        return betas
    scaled = np.round(np.asarray(betas, np.float64) * 300.0)
    return np.clip(scaled, np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)


def _sessions_of(betas, trials_per_session: int) -> Iterable[np.ndarray]:
    """Per-session (T, X, Y, Z) arrays from one (n_trials, X, Y, Z) array or an iterable of them."""
    if isinstance(betas, np.ndarray):
        if betas.ndim != 4 or len(betas) % trials_per_session:
            raise ValueError(f"betas of shape {betas.shape}: expected (n_sessions × {trials_per_session}, X, Y, Z)")
        return (betas[i : i + trials_per_session] for i in range(0, len(betas), trials_per_session))
    return betas


def write_betas_session(path: Path, betas: np.ndarray, affine: np.ndarray) -> None:
    """One session, (T, X, Y, Z), as ``.nii.gz``/``.nii`` (X, Y, Z, T) or ``.hdf5`` ``betas`` (T, Z, Y, X)."""
    data = _as_int16(betas)
    if path.name.endswith(".hdf5"):
        with h5py.File(path, "w") as f:  # MATLAB X×Y×Z×T, chunked [1 1 1 T] as NSD publishes it
            f.create_dataset("betas", data=data.transpose(0, 3, 2, 1), chunks=(len(data), 1, 1, 1))
    else:
        _save_nifti(path, np.asfortranarray(data.transpose(1, 2, 3, 0)), affine)


def _stim_info(n_images: int, subjectim: np.ndarray, masterordering: np.ndarray, sharedix: np.ndarray,
               n_trials: Mapping[int, int], coco_ids) -> pd.DataFrame:  # fmt: skip
    """``nsd_stim_info_merged.csv``: ``subjectK_repR`` = 1-based global trial of the R-th showing, 0 never."""
    cols: dict[str, np.ndarray] = {
        "cocoId": np.arange(n_images) if coco_ids is None else np.asarray(coco_ids),
        "cocoSplit": np.full(n_images, "train2017"),
        "cropBox": np.full(n_images, "(0, 0, 0, 0)"),
        "loss": np.zeros(n_images),
        "nsdId": np.arange(n_images),
        "flagged": np.zeros(n_images, bool),
        "BOLD5000": np.zeros(n_images, bool),
        "shared1000": np.isin(np.arange(n_images), np.asarray(sharedix) - 1),
    }
    for k in range(1, len(subjectim) + 1):
        cols[f"subject{k}"] = np.isin(np.arange(n_images), subjectim[k - 1] - 1).astype(np.int64)
    for k in range(1, len(subjectim) + 1):
        reps = np.zeros((n_images, 3), np.int64)
        count = np.zeros(n_images, np.int64)
        for t in range(n_trials.get(k, 0)):
            nsd = subjectim[k - 1, masterordering[t] - 1] - 1
            if count[nsd] < 3:
                reps[nsd, count[nsd]] = t + 1
            count[nsd] += 1
        for r in range(3):
            cols[f"subject{k}_rep{r}"] = reps[:, r]
    return pd.DataFrame(cols)


def _responses(k: int, subjectim: np.ndarray, masterordering: np.ndarray, n_sessions: int,
               trials_per_session: int, lengths: list[int]) -> pd.DataFrame:  # fmt: skip
    n = n_sessions * trials_per_session
    ten_k = masterordering[:n]
    run_of = np.repeat(np.arange(1, len(lengths) + 1), lengths)
    trial_of = np.concatenate([np.arange(1, m + 1) for m in lengths])
    seen: set[int] = set()
    is_old = np.zeros(n, np.int64)
    for t, m in enumerate(ten_k.tolist()):
        is_old[t] = m in seen
        seen.add(m)
    df = pd.DataFrame({c: np.full(n, np.nan) for c in RESPONSE_COLUMNS})
    df["SUBJECT"] = k
    df["SESSION"] = np.repeat(np.arange(1, n_sessions + 1), trials_per_session)
    df["RUN"] = np.tile(run_of, n_sessions)
    df["TRIAL"] = np.tile(trial_of, n_sessions)
    df["ISOLD"] = is_old
    df["MISSINGDATA"] = 0
    df["73KID"] = subjectim[k - 1, ten_k - 1]
    df["10KID"] = ten_k
    return df


def write_nsd_tree(
    root,
    *,
    images: np.ndarray,
    subjectim: np.ndarray,
    masterordering: np.ndarray,
    sharedix: np.ndarray,
    trials_per_session: int,
    betas: Mapping[int, np.ndarray | Iterable[np.ndarray]],
    rois: Mapping[int, Mapping[str, np.ndarray]],
    roi_names: Mapping[str, Mapping[int, str]],
    affines: Mapping[int, np.ndarray] | None = None,
    betas_format: str | Mapping[int, str | tuple[str, ...]] = "nii.gz",
    beta_version: str = DEFAULT_BETA_VERSION,
    runs_per_session: int = 12,
    ncsnr: Mapping[int, np.ndarray] | None = None,
    responses: bool = True,
    stim_info: bool = True,
    stimpattern: bool = True,
    ctab_dirs: tuple[str, ...] = ("subject", "fsaverage"),
    coco_ids: np.ndarray | None = None,
) -> dict[int, int]:
    """Write an NSD tree under ``root``; returns {subject: sessions written}.

    Args:
        images: (n_images, H, W, 3) uint8, row = 0-based nsdId (``imgBrick``).
        subjectim: (n_subjects, n_per_subject) 1-based 73k ids; the first ``len(sharedix)``
            columns are the shared images (NSD's convention).
        masterordering: (n_trials,) 1-based columns of ``subjectim``, in trial order.
        sharedix: (n_shared,) 1-based 73k ids of the shared images.
        trials_per_session: trials in one session's betas file (NSD: 750).
        betas: subject number → (n_sessions · T, X, Y, Z) array, or an iterable of per-session
            (T, X, Y, Z) arrays (written one at a time, so a generator keeps memory at one
            session); float = % signal change, int16 = already ×300.
        rois: subject number → atlas (file stem, e.g. ``prf-visualrois``) → (X, Y, Z) int labels.
        roi_names: atlas → {label k > 0: name} for its ``.mgz.ctab``.
        affines: subject number → 4×4 voxel-to-mm affine (default 1.8 mm, centred grid).
        betas_format: ``nii.gz``, ``nii`` or ``hdf5``, or a tuple of them, for all subjects or
            per subject number.
        ncsnr: subject number → (X, Y, Z) float, written as ``ncsnr.nii.gz`` next to the betas.
        responses / stim_info / stimpattern: write ``responses.tsv``, the stim-info CSV, and the
            design's ``stimpattern``.
        ctab_dirs: where the ``.mgz.ctab`` files go: ``subject`` and/or ``fsaverage``.
    """
    root = Path(root)
    subjectim = np.asarray(subjectim, np.int64)
    masterordering = np.asarray(masterordering, np.int64).ravel()
    sharedix = np.asarray(sharedix, np.int64).ravel()
    if len(masterordering) % trials_per_session:
        raise ValueError(f"masterordering has {len(masterordering)} trials, not a multiple of {trials_per_session}")
    n_design_sessions = len(masterordering) // trials_per_session
    lengths = _run_lengths(trials_per_session, runs_per_session)

    expt = root / "nsddata/experiments/nsd"
    expt.mkdir(parents=True, exist_ok=True)
    design = {"masterordering": masterordering[None, :].astype(np.float64),
              "subjectim": subjectim.astype(np.float64), "sharedix": sharedix[None, :].astype(np.float64)}
    if stimpattern:
        design["stimpattern"] = _stimpattern(n_design_sessions, lengths).astype(np.float64)
    _savemat(expt / "nsd_expdesign.mat", design)

    stim = root / "nsddata_stimuli/stimuli/nsd"
    stim.mkdir(parents=True, exist_ok=True)
    with h5py.File(stim / "nsd_stimuli.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=np.asarray(images, np.uint8), chunks=(1, *images.shape[1:]))

    written: dict[int, int] = {}
    for k, subject_betas in betas.items():
        subj = subject_folder(k)
        affine = np.asarray(affines[k]) if affines and k in affines else None
        grid = None
        folder = root / "nsddata_betas/ppdata" / subj / "func1pt8mm" / beta_version
        folder.mkdir(parents=True, exist_ok=True)
        fmt = betas_format.get(k, "nii.gz") if isinstance(betas_format, Mapping) else betas_format
        formats = (fmt,) if isinstance(fmt, str) else tuple(fmt)
        n = 0
        for n, session in enumerate(_sessions_of(subject_betas, trials_per_session), 1):
            if grid is None:
                grid = session.shape[1:]
                if affine is None:
                    affine = np.diag([1.8, 1.8, 1.8, 1.0])
                    affine[:3, 3] = -1.8 * (np.asarray(grid) - 1) / 2.0
            for ext in formats:
                write_betas_session(folder / f"betas_session{n:02d}.{ext}", session, affine)
        written[k] = n
        if ncsnr and k in ncsnr:
            _save_nifti(folder / "ncsnr.nii.gz", np.asarray(ncsnr[k], np.float32), affine)

        roi_dir = root / "nsddata/ppdata" / subj / "func1pt8mm/roi"
        roi_dir.mkdir(parents=True, exist_ok=True)
        for atlas, labels in rois.get(k, {}).items():
            _save_nifti(roi_dir / f"{atlas}.nii.gz", np.asarray(labels, np.int16), affine)
        for where in ctab_dirs:
            label_dir = root / "nsddata/freesurfer" / (subj if where == "subject" else "fsaverage") / "label"
            label_dir.mkdir(parents=True, exist_ok=True)
            for atlas in rois.get(k, {}):
                lines = ["0 Unknown"] + [f"{i} {name}" for i, name in sorted(roi_names[atlas].items())]
                (label_dir / f"{atlas}.mgz.ctab").write_text("\n".join(lines) + "\n")
        if responses:
            behav = root / "nsddata/ppdata" / subj / "behav"
            behav.mkdir(parents=True, exist_ok=True)
            df = _responses(k, subjectim, masterordering, n, trials_per_session, lengths)
            df.to_csv(behav / "responses.tsv", sep="\t", index=False)

    if stim_info:
        n_trials = {k: n * trials_per_session for k, n in written.items()}
        df = _stim_info(len(images), subjectim, masterordering, sharedix, n_trials, coco_ids)
        df.to_csv(expt / "nsd_stim_info_merged.csv")
    return written
