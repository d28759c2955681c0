"""Format ``nsd``: the Natural Scenes Dataset as published on AWS (Allen et al. 2022; datasets.md §2).

Files under the dataset folder (``path``), read where and as NSD publishes them::

    nsddata/experiments/nsd/nsd_expdesign.mat               masterordering, subjectim, sharedix
    nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5            imgBrick (n_images, H, W, 3) uint8
    nsddata_betas/ppdata/subjAA/func1pt8mm/<beta_version>/betas_sessionNN.{nii.gz,hdf5}
    nsddata/ppdata/subjAA/func1pt8mm/roi/<atlas>.nii.gz     -1 outside cortex, 0 unlabeled, k > 0
    nsddata/freesurfer/{subjAA,fsaverage}/label/<atlas>.mgz.ctab    "k name" per line
    nsddata/ppdata/subjAA/behav/responses.tsv               optional, cross-checked
    nsddata_betas/.../<beta_version>/ncsnr.nii.gz           optional, gives the noise ceiling

**Trials → images.** Global trial t (0-based) of subject AA shows ``subjectim[AA-1,
masterordering[t]-1] - 1`` (0-based nsdId = imgBrick row); session s holds the trials after those
of sessions 1..s-1, as many as the design's ``stimpattern`` says when it adds up to
``masterordering``, else as the (equal) betas files hold. No size is hard-coded. ``responses.tsv``,
when present, must give the same ``73KID`` per (SESSION, RUN, TRIAL), else one line names the file
and the first disagreeing trial (a session it does not list at all is not checked).

**Samples.** One row per trial in trial order, int16 / 300 = % signal change (float32). ``run`` is
the *session*, so the common ``normalization: run`` (default) z-scores each voxel within each
session, the MindEye convention, with no NSD switch of its own (``train``/``none`` as for GOD).
Test trials stay single: rule ``mask_roi`` averages their repeats (up to 3) after normalising and
keeps the trials. Voxels: the union of label > 0 over the atlases read, in volume order (x
fastest); ``voxel_xyz`` in mm from the ROI volume's affine; ``attrs`` hold ``trial`` (1-based global
trial per row), ``voxel_ijk`` and the files read.

**Split.** The :class:`StimulusSet` is per dataset and every test image needs trials of every
configured subject: *test* = the shared images (``sharedix``) every configured subject saw in its
chosen sessions (sessions 1-37, subjects 1/2/5/7: 982 per datasets.md), sorted by nsdId; *train* =
the union of their non-shared images seen in those sessions (disjoint between subjects, each
indexes its own). Trials of a shared image outside the test set are dropped (logged, counted in
``attrs``). Images are centre-cropped and resized (LANCZOS) as for GOD, streamed from imgBrick in
sorted chunks; ``names`` ``nsdNNNNN`` and ``stimulus_id`` = nsdId, ``category`` -1.

**ROI names.** Config ROI names are alphanumeric, so NSD names are sanitised (``FFA-1`` → ``FFA1``,
``ecc4+`` → ``ecc4plus``). Every label is available *qualified* as ``<atlas><name>`` (the atlas
file stem sanitised: ``prfvisualroisV1v``, ``flocfacesFFA1``, ``Kastner2015V1v``, ``HCPMMP1V1``), and
every atlas whole (``prfvisualrois`` = label > 0). Labels of the primary atlases (:data:`PRIMARY`:
nsdgeneral, prf-visualrois, prf-eccrois, streams, floc-*; no two share a name) are also *bare*
(``nsdgeneral``, ``V1v``, ``early``, ``FFA1``); other atlases (Kastner2015 repeats V1v..., HCP_MMP1
has V1) only qualified, so reading one never changes what a bare name means; a bare name two
primary atlases define is ambiguous and only qualified. In an atlas, ``<...digit>v``/``d`` labels
also give their union (V1 = V1v ∪ V1d, V2, V3) and ``hV4`` is also ``V4`` (as for GOD). Config
``rois:`` unions work on all of these.

**Options** (``options:`` of the dataset entry, checked by :func:`check`; defaults in brackets):
``beta_version`` [betas_fithrf_GLMdenoise_RR]; ``sessions`` [all: every session file on disk], or
``"1-37"``, or a list of numbers and ``"A-B"`` ranges; ``betas_format`` [auto: .nii.gz, else .hdf5,
else .nii per session] or ``nifti`` / ``hdf5``; ``atlases`` [auto: those defining the dataset's
``rois`` names, every primary atlas on disk when a name is not an NSD name, e.g. a config union]
or a list of ROI file stems; ``coco_annotations`` [none] a folder (relative to the dataset folder
or absolute) of COCO-2017 ``captions_<split>.json`` and ``instances_<split>.json``, joined on
``cocoId`` through ``nsd_stim_info_merged.csv`` into ``images.h5`` ``captions`` / ``objects``
(:mod:`.coco`); ``train_trials`` [single] or ``average`` (Brain-Diffuser: one training
sample per image, the mean of its trials, each trial first normalised with its own session's
statistics by rule ``mask_roi``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from PIL import Image

from ...errors import InputError
from .base import TEST, TRAIN, ImageSplit, Reader, StimulusSet, SubjectRecording
from . import coco
from .images import load_unpaired_folder, square_resize

# DESIGN, ROIS, PRIMARY, load_design and _label_table are also read as nsd.<name> (tests, simulator)
from .nsd_files import (  # noqa: F401
    _CHUNK_BYTES,
    PRIMARY,
    Design,
    _label_table,
    _load_volume,
    betas_header,
    check_responses,
    load_design,
    read_betas,
    roi_names,
    sanitize,
    session_layout,
)  # fmt: skip
from .nsd_paths import (
    _SESSION_FILE,
    BRICK,
    DESIGN,
    FORMATS,
    ROIS,
    _atlas_selection,
    _atlases_on_disk,
    _betas_dir,
    _ctab,
    _roi_dir,
    coco_folder,
    parse_options,
    session_files,
    subject_number,
)  # fmt: skip

log = logging.getLogger(__name__)

# -- the Reader's functions ----------------------------------------------------------------------


def subject_inputs(dataset: dict, root: str, subject: str) -> dict[str, str]:
    """Files rule ``mask_roi`` reads: ``subject`` (first session, for provenance), ``design``,
    ``sessionNN`` per session, ``roi_<atlas>`` (+ ``ctab_<atlas>`` when present), and the optional
    ``responses`` and ``ncsnr``."""
    opts = parse_options(dataset.get("options"))
    n = subject_number(subject)
    sessions = session_files(root, n, opts)
    folder = _betas_dir(root, n, opts["beta_version"])
    first = next(iter(sessions.values()), folder / f"betas_session01{FORMATS[opts['betas_format']][0]}")
    files = {"subject": str(first), "design": f"{root}/{DESIGN}"}
    files.update({f"session{s:02d}": str(p) for s, p in sessions.items()})
    for atlas in _atlas_selection(dataset, root, n, opts):
        key = sanitize(atlas)
        files[f"roi_{key}"] = str(_roi_dir(root, n) / f"{atlas}.nii.gz")
        ctab = _ctab(root, n, atlas)
        if ctab is not None:
            files[f"ctab_{key}"] = str(ctab)
    responses = Path(root) / "nsddata/ppdata" / f"subj{n:02d}" / "behav/responses.tsv"
    if responses.is_file():
        files["responses"] = str(responses)
    if (folder / "ncsnr.nii.gz").is_file():
        files["ncsnr"] = str(folder / "ncsnr.nii.gz")
    return files


def image_inputs(dataset: dict, root: str) -> list[str]:
    """The design, the stimulus brick and the configured subjects' session files (which images
    each subject saw depends on its sessions)."""
    opts = parse_options(dataset.get("options"))
    files = [f"{root}/{DESIGN}", f"{root}/{BRICK}"]
    if coco_folder(root, opts) is not None:
        files += [f"{root}/{coco.STIM_INFO}", str(coco_folder(root, opts))]
    for subject in dataset.get("subjects", []):
        files += [str(p) for p in session_files(root, subject_number(subject), opts).values()]
    return files


def check(dataset: dict, where: str) -> None:
    opts = parse_options(dataset.get("options"), f"{where}.options")
    if dataset.get("roi_source", "metadata") != "metadata":
        raise InputError(f"config error at {where}.roi_source: format nsd reads its own ROI volumes "
                         f"(nsddata/ppdata/subjAA/func1pt8mm/roi); use roi_source: metadata")  # fmt: skip
    if dataset.get("unlabeled_fmri"):
        raise InputError(f"config error at {where}.unlabeled_fmri: only supported with format god_bdata")
    for subject in dataset.get("subjects", []):
        try:
            subject_number(subject)
        except InputError as exc:
            raise InputError(f"config error at {where}.subjects: {exc}") from None


def file_rois(dataset: dict, root: str, subject: str) -> tuple[str, set[str]] | None:
    """The ROI names the subject's selected atlases define, from their ``.mgz.ctab`` (or the
    built-in table of a primary atlas); None while the ROI folder is not there."""
    opts = parse_options(dataset.get("options"))
    n = subject_number(subject)
    roi_dir = _roi_dir(root, n)
    if not roi_dir.is_dir():
        return None
    atlases = _atlas_selection(dataset, root, n, opts)
    on_disk = _atlases_on_disk(roi_dir)
    missing = [a for a in atlases if a not in on_disk]
    if missing:
        raise InputError(f"{roi_dir}: no ROI volume {missing[0]}.nii.gz (atlases there: {', '.join(on_disk)})")
    tables = {a: _label_table(a, _ctab(root, n, a), roi_dir / f"{a}.nii.gz") for a in atlases}
    return f"{roi_dir} (atlases {', '.join(atlases)})", set(roi_names(tables)[0])


# -- stimuli -------------------------------------------------------------------------------------


def _subjects_on_disk(root, version: str) -> list[str]:
    base = Path(root) / "nsddata_betas/ppdata"
    return sorted(p.parents[1].name for p in base.glob(f"subj*/func1pt8mm/{version}") if p.is_dir())


def seen_images(design: Design, root, subject: str, opts: dict) -> tuple[np.ndarray, dict[int, Path]]:
    """0-based nsdIds of the subject's trials in the chosen sessions (trial order) and the files."""
    n = subject_number(subject)
    files = session_files(root, n, opts)
    if not files:
        raise InputError(f"no betas_sessionNN files in {_betas_dir(root, n, opts['beta_version'])} "
                         f"(options: beta_version {opts['beta_version']}, betas_format {opts['betas_format']})")  # fmt: skip
    counts = {s: betas_header(p, s).n_trials for s, p in files.items()}
    layout = session_layout(design, counts, files)
    trials = np.concatenate([np.arange(a, a + m) for a, m in layout.values()])
    return design.images(n, trials), files


def read_brick(path: Path, ids: np.ndarray, image_size: int) -> np.ndarray:
    """(len(ids), S, S, 3) uint8 of imgBrick rows ``ids``, read in sorted chunks (never the whole brick)."""
    if not path.is_file():
        raise InputError(f"NSD stimulus file not found: {path}")
    out = np.empty((len(ids), image_size, image_size, 3), np.uint8)
    try:
        with h5py.File(path, "r") as f:
            if "imgBrick" not in f:
                raise InputError(f"{path}: dataset 'imgBrick' missing (keys: {', '.join(f)})")
            ds = f["imgBrick"]
            if ds.ndim != 4 or ds.shape[3] != 3 or ds.dtype != np.uint8:
                raise InputError(f"{path}: imgBrick of shape {ds.shape} dtype {ds.dtype}, expected (n, H, W, 3) uint8")
            if len(ids) and ids.max() >= ds.shape[0]:
                raise InputError(f"{path}: imgBrick has {ds.shape[0]} images, the design needs nsdId {ids.max()} "
                                 f"(73KID {ids.max() + 1})")  # fmt: skip
            order = np.argsort(ids)  # h5py reads increasing rows; ids are unique
            per = max(1, _CHUNK_BYTES // max(1, int(np.prod(ds.shape[1:]))))
            for c in range(0, len(order), per):
                rows = order[c : c + per]
                for r, image in zip(rows, ds[ids[rows]]):
                    out[r] = square_resize(Image.fromarray(image), image_size)
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot read imgBrick ({type(exc).__name__}: {exc})") from exc
    return out


def _split(images: np.ndarray, ids: np.ndarray) -> ImageSplit:
    return ImageSplit(images=images, names=np.array([f"nsd{i:05d}" for i in ids.tolist()], dtype=str),
                      stimulus_id=ids.astype(np.float64), category=np.full(len(ids), -1, np.int64))  # fmt: skip


def read_stimuli(dataset: dict, root: str, image_size: int) -> StimulusSet:
    """Test = shared images every configured subject saw in its sessions; train = the union of
    their non-shared images (module docstring). Rule ``prepare_images`` passes the configured
    ``subjects`` (the reader sets ``stimuli_need_subjects``); without them (a direct call), every
    subject with betas on disk counts."""
    opts = parse_options(dataset.get("options"))
    design = load_design(Path(root) / DESIGN)
    subjects = list(dataset.get("subjects") or [])
    if not subjects:
        subjects = _subjects_on_disk(root, opts["beta_version"])
        if not subjects:
            raise InputError(f"no subject folders with {opts['beta_version']} betas in {Path(root) / 'nsddata_betas/ppdata'}")
        log.warning("nsd: configured subjects unknown here, the stimulus set covers all %d subjects with "
                    "betas on disk (%s)", len(subjects), ", ".join(subjects))  # fmt: skip
    shared_seen, train = [], set()
    for subject in subjects:
        ids, _ = seen_images(design, root, subject, opts)
        shared_seen.append(set(np.intersect1d(ids, design.shared).tolist()))
        train |= set(np.setdiff1d(ids, design.shared).tolist())
    test_ids = np.array(sorted(set.intersection(*shared_seen)), np.int64)
    union = set.union(*shared_seen)
    if len(union) > len(test_ids):
        log.info("nsd: %d shared images seen by some but not all of subjects %s dropped from the test set",
                 len(union) - len(test_ids), subjects)  # fmt: skip
    if not len(test_ids):
        raise InputError(f"{design.path}: no shared image was seen by every one of subjects {subjects} in the "
                         f"chosen sessions, so there is no test set")  # fmt: skip
    train_ids = np.array(sorted(train), np.int64)
    images = read_brick(Path(root) / BRICK, np.r_[train_ids, test_ids], image_size)
    unpaired = load_unpaired_folder(dataset["unpaired_images"], image_size) if dataset.get("unpaired_images") else None
    log.info("nsd: %d train and %d test images from %s", len(train_ids), len(test_ids), root)
    train, test = _split(images[: len(train_ids)], train_ids), _split(images[len(train_ids) :], test_ids)
    folder = coco_folder(root, opts)
    if folder is not None:  # captions and objects joined on cocoId (module coco)
        for part, ids in ((train, train_ids), (test, test_ids)):
            part.captions, part.objects = coco.annotate(ids, Path(root) / coco.STIM_INFO, folder)
    return StimulusSet(train=train, test=test, unpaired=unpaired, source=Path(root))


# -- subjects ------------------------------------------------------------------------------------


def _parse_files(files: dict) -> tuple[dict[int, Path], dict[str, Path], dict[str, Path]]:
    sessions, atlases, ctabs = {}, {}, {}
    for key, value in files.items():
        p = Path(value)
        if key.startswith("session"):
            m = _SESSION_FILE.fullmatch(p.name)
            if not m:
                raise InputError(f"{p}: not a betas_sessionNN.nii.gz/.nii/.hdf5 file")
            sessions[int(m.group(1))] = p
        elif key.startswith("roi_"):
            atlas = re.sub(r"\.nii(\.gz)?$", "", p.name)
            atlases[atlas] = p
        elif key.startswith("ctab_"):
            ctabs[p.name[: -len(".mgz.ctab")]] = p
    if not sessions:
        raise InputError(f"no betas_sessionNN files in {Path(files['subject']).parent} (check options "
                         f"beta_version, sessions and betas_format)")  # fmt: skip
    return dict(sorted(sessions.items())), atlases, ctabs


def _voxels(atlas_files: dict[str, Path], ctabs: dict[str, Path], grid) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """Voxels = union of label > 0 over the atlases, in volume order: (ijk (V, 3), xyz mm, ROI flags,
    provenance)."""
    roi_dir = next(iter(atlas_files.values())).parent
    available = _atlases_on_disk(roi_dir)
    volumes, affines = {}, []
    for atlas, path in atlas_files.items():
        volumes[atlas], affine = _load_volume(path, grid, available)
        affines.append(affine)
    tables = {a: _label_table(a, ctabs.get(a), atlas_files[a]) for a in volumes}
    flat = np.flatnonzero(np.logical_or.reduce([v > 0 for v in volumes.values()]).ravel(order="F"))
    if not len(flat):
        raise InputError(f"{roi_dir}: no voxel has a label > 0 in {', '.join(f'{a}.nii.gz' for a in volumes)}")
    ijk = np.stack(np.unravel_index(flat, grid, order="F"), axis=1)
    labels = {a: v[tuple(ijk.T)] for a, v in volumes.items()}
    names, ambiguous = roi_names(tables)
    rois = {name: np.logical_or.reduce([labels[a] == k for a, k in parts]) for name, parts in names.items()}
    info = {"atlases": list(volumes), "atlas_files": [str(p) for p in atlas_files.values()],
            "label_tables": {a: str(ctabs[a]) if a in ctabs else "built-in" for a in volumes},
            "ambiguous_roi_names": ambiguous}  # fmt: skip
    return ijk, nib.affines.apply_affine(affines[0], ijk), rois, info


def _samples(layout, expected, design: Design, stimuli: StimulusSet, sessions: dict[int, Path]):
    """Per kept trial: datatype, image row, session, 1-based global trial; per session the kept mask;
    and the number of trials dropped (shared images outside the test set)."""
    test_row = {int(i): r for r, i in enumerate(np.asarray(stimuli.test.stimulus_id).tolist())}
    train_row = {int(i): r for r, i in enumerate(np.asarray(stimuli.train.stimulus_id).tolist())}
    shared = set(design.shared.tolist())
    rows: list[tuple[int, int, int, int]] = []
    keep = {}
    for s, (start, count) in layout.items():
        keep[s] = np.zeros(count, bool)
        for t, nsd_id in enumerate(expected[s].tolist()):
            if nsd_id in shared:
                if nsd_id not in test_row:
                    continue
                rows.append((TEST, test_row[nsd_id], s, start + t + 1))
            elif nsd_id in train_row:
                rows.append((TRAIN, train_row[nsd_id], s, start + t + 1))
            else:
                raise InputError(f"{sessions[s]}: trial {t + 1} shows nsdId {nsd_id}, not among the training images "
                                 f"of {stimuli.source} (built for other subjects or sessions? rerun prepare_images)")  # fmt: skip
            keep[s][t] = True
    table = np.array(rows, np.int64).reshape(-1, 4)
    dropped = sum(len(m) - int(m.sum()) for m in keep.values())
    return table[:, 0], table[:, 1], table[:, 2], table[:, 3], keep, dropped


def _noise_ceiling(path: Path, grid, ijk: np.ndarray, test_index: np.ndarray) -> np.ndarray:
    """NSD's noise ceiling of the test averages as a correlation: r = √(ncsnr² / (ncsnr² + mean(1/n))),
    n = each test image's number of trials."""
    ncsnr, _ = _load_volume(path, grid, integer=False)
    _, reps = np.unique(test_index, return_counts=True)
    nc2 = ncsnr[tuple(ijk.T)].astype(np.float64) ** 2
    return np.sqrt(nc2 / (nc2 + np.mean(1.0 / reps if len(reps) else 1.0)))


def read_nsd_subject(files: dict, stimuli: StimulusSet, train_trials: str = "single") -> SubjectRecording:
    """Read one subject from the files :func:`subject_inputs` names (module docstring).

    Everything is validated (design, headers, trial counts, ROI volumes, responses.tsv, image ids)
    before the first betas byte is read; then one session at a time is read, masked and dropped.
    """
    sessions, atlas_files, ctabs = _parse_files(files)
    first = next(iter(sessions.values()))
    folder = first.parent
    subj = folder.parents[1].name
    if not re.fullmatch(r"subj\d+", subj):
        raise InputError(f"{first}: expected nsddata_betas/ppdata/subjAA/func1pt8mm/<version>/, found {subj!r}")
    if not atlas_files:
        raise InputError(f"{first}: no ROI volume given (atlases of nsddata/ppdata/{subj}/func1pt8mm/roi)")
    n = subject_number(subj)
    design = load_design(files["design"])
    headers = {s: betas_header(p, s) for s, p in sessions.items()}
    grid = headers[min(headers)].grid
    for h in headers.values():
        if h.grid != grid:
            raise InputError(f"{h.path}: grid {h.grid}, expected {grid} as in {headers[min(headers)].path}")
    layout = session_layout(design, {s: h.n_trials for s, h in headers.items()}, sessions)
    expected = {s: design.images(n, np.arange(a, a + m)) for s, (a, m) in layout.items()}
    checked = check_responses(Path(files["responses"]), n, layout, expected) if files.get("responses") else []
    if files.get("responses") and len(checked) < len(layout):
        log.info("%s lists no trials of session(s) %s: not cross-checked", files["responses"],
                 sorted(set(layout) - set(checked)))  # fmt: skip
    ijk, xyz, rois, roi_info = _voxels(atlas_files, ctabs, grid)
    datatype, image_index, run, trial, keep, dropped = _samples(layout, expected, design, stimuli, sessions)
    if dropped:
        log.info("%s: %d trials of shared images outside the test set dropped", folder, dropped)

    fmri = np.empty((len(datatype), len(ijk)), np.float32)
    row = 0
    for s, header in headers.items():  # one session at a time: read, mask, / 300, drop
        values = read_betas(header, ijk)[keep[s]]
        fmri[row : row + len(values)] = values.astype(np.float32) / np.float32(300.0)
        row += len(values)
        del values
    noise_ceiling = None
    if files.get("ncsnr"):
        noise_ceiling = _noise_ceiling(Path(files["ncsnr"]), grid, ijk, image_index[datatype == TEST])
    attrs = {
        "format": "nsd", "subject": subj, "beta_version": folder.name, "sessions": list(layout),
        "betas_files": [str(p) for p in sessions.values()], "design": str(design.path),
        "responses": str(files.get("responses") or ""), "responses_sessions_checked": checked, **roi_info,
        "dropped_trials": dropped, "train_trials": train_trials, "trial": trial, "voxel_ijk": ijk, "grid": list(grid),
        "trials_per_session_from": "stimpattern" if design.session_counts is not None else "betas files",
    }  # fmt: skip
    return SubjectRecording(fmri=fmri, datatype=datatype, run=run, image_index=image_index, voxel_xyz=xyz,
                            rois=rois, source=folder, noise_ceiling=noise_ceiling, attrs=attrs,
                            train_repeats=train_trials)  # fmt: skip


def read_subject(files: dict, stimuli: StimulusSet, options: dict | None = None) -> SubjectRecording:
    return read_nsd_subject(files, stimuli, train_trials=parse_options(options)["train_trials"])


READER = Reader(
    name="nsd",
    description="Natural Scenes Dataset, AWS layout (nsd_expdesign.mat, betas_sessionNN, ROI volumes, imgBrick)",
    rois=ROIS,
    image_inputs=image_inputs,
    subject_inputs=subject_inputs,
    read_stimuli=read_stimuli,
    read_subject=read_subject,
    check=check,
    file_rois=file_rois,
    stimuli_need_subjects=True,
    published_dataset="NSD",
)
