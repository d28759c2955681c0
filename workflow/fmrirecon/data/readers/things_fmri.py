"""Format ``things_fmri``: THINGS-fMRI single-trial responses in table format (Hebart et al. 2023;
datasets.md §4), read where and as figshare+ publishes them.

Files under the dataset folder (``path``)::

    betas_csv/sub-XX_ResponseData.h5       pandas HDF5 "fixed" store: voxels × (voxel_id, trials 0..n-1)
    betas_csv/sub-XX_StimulusMetadata.csv  per trial (row i = trial column i): trial_type
                                           (train/test/catch), session, run, stimulus, concept, ...
    betas_csv/sub-XX_VoxelMetadata.csv     per voxel: voxel_id, voxel_x/y/z, nc_testset, 0/1 ROI columns
    object_images/<concept>/<stimulus>     the THINGS object images (distributed separately)

The ResponseData store is read with h5py, never with ``pd.read_hdf``: pandas would unpickle its
column index (:mod:`.things_files`). Config subjects ``1``, ``01`` and ``sub-01``-style labels all
mean ``sub-01``.

**Trials.** Catch trials are dropped (the published table has none; a table that lists them works
too). ``train`` trials are single presentations; ``test`` trials (100 images × 12 repeats in the
published data) stay single here and rule ``mask_roi`` averages each image's repeats after
normalising, as for GOD and NSD. ``run`` is numbered over the sorted (session, run) pairs, so
``normalization: run`` z-scores each voxel within each run.

**Images.** The :class:`StimulusSet` is per dataset and every test image needs trials of every
configured subject: *test* = the test stimuli every configured subject saw, *train* = the union of
their training stimuli (a stimulus that is a training image for one subject and a test image for
another fails). Each split is sorted by image name = the stimulus file name without its extension
(``dog_12s``); ``category`` = the concept's index in the sorted concepts of both splits;
``stimulus_id`` NaN. Images are read from ``<images>/<concept>/<stimulus>`` (a ``stimulus`` that
holds a ``/`` is taken as relative to ``<images>``), centre-cropped and resized like GOD's. With
``options.concepts_tsv`` (THINGS' ``things_concepts.tsv``: ``Word``, ``uniqueID``, ``Definition ...``)
each image gets the captions ``"a photo of <word>"`` and the concept's definition (paper 003's text
targets); a concept the TSV lacks fails.

**Voxels and ROIs.** Voxels are the rows of VoxelMetadata whose published ROI columns flag them
(``options.voxels: rois``, default: the ``VC`` union below; the full table has ~211k voxels, most
outside any ROI) or every row (``voxels: all``), in file order; ``voxel_id`` of ResponseData must
equal VoxelMetadata's row by row. ``voxel_xyz`` is ``voxel_x/y/z`` (voxel indices of the T1w-space
grid, not mm). ``nc_testset`` (percent explainable variance of the test averages), when present,
gives the noise ceiling as a correlation ``sqrt(nc_testset / 100)``. ROI names (config names are
alphanumeric, so ``LO1 (prf)`` is ``LO1prf``):

- every published ROI column (:data:`ROI_COLUMNS`): ``V1 V2 V3 hV4 VO1 VO2 LO1prf LO2prf TO1 TO2 V3b
  V3a``, the category-selective ROIs per hemisphere ``lEBA rEBA lFFA rFFA lOFA rOFA lSTS rSTS lPPA
  rPPA lRSC rRSC lTOS rTOS lLOC rLOC``, and ``IT``; every one must be a column of the file;
- both hemispheres of each: ``EBA FFA OFA STS PPA RSC TOS LOC``; ``V4`` = ``hV4``;
- ``early`` = V1|V2|V3|hV4; GOD's ``LVC`` = V1|V2|V3 and ``HVC`` = LOC|FFA|PPA; ``VC`` = every
  voxel of any published ROI column. The ``glasser-*`` parcels are not read.

**Options** (``datasets[].options``): ``betas`` [``betas_csv``] and ``images`` [``object_images``]
folders, ``concepts_tsv`` [none], each relative to the dataset folder or absolute; ``voxels``
[``rois``] or ``all``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ...errors import InputError
from .base import TEST, TRAIN, ImageSplit, Reader, StimulusSet, SubjectRecording
from .images import load_unpaired_folder, open_image
from .things_files import (
    open_response_store,
    read_concepts,
    read_header,
    read_responses,
    read_stimulus_table,
    read_voxel_table,
)  # fmt: skip

log = logging.getLogger(__name__)

NAME = "things_fmri"
#: The published 0/1 ROI columns of VoxelMetadata (datasets.md §4), in file order.
ROI_COLUMNS = ("V1", "V2", "V3", "hV4", "VO1", "VO2", "LO1 (prf)", "LO2 (prf)", "TO1", "TO2", "V3b", "V3a",
               "lEBA", "rEBA", "lFFA", "rFFA", "lOFA", "rOFA", "lSTS", "rSTS", "lPPA", "rPPA", "lRSC", "rRSC",
               "lTOS", "rTOS", "lLOC", "rLOC", "IT")  # fmt: skip
#: Category-selective ROIs published per hemisphere (``l<name>``, ``r<name>``).
BILATERAL = ("EBA", "FFA", "OFA", "STS", "PPA", "RSC", "TOS", "LOC")
#: Unions of config names (see the module docstring); ``VC`` is every published ROI column.
UNIONS = {"V4": ("hV4",), "early": ("V1", "V2", "V3", "hV4"), "LVC": ("V1", "V2", "V3"),
          "HVC": ("LOC", "FFA", "PPA")}  # fmt: skip
OPTION_DEFAULTS = {"betas": "betas_csv", "images": "object_images", "concepts_tsv": "", "voxels": "rois"}

_SUBJECT = re.compile(r"(?:sub-?)?(\d+)")


def config_name(column: str) -> str:
    """A ROI column as a config name: ``LO1 (prf)`` → ``LO1prf``."""
    return re.sub(r"[^A-Za-z0-9]", "", column)


#: The atomic roster prepared files record membership in (config names).
ROIS = tuple(config_name(c) for c in ROI_COLUMNS)


def roi_definitions(columns) -> dict[str, tuple[str, ...]]:
    """Config ROI name → the ROI columns (file names) it is the union of, for the columns present."""
    present = [c for c in ROI_COLUMNS if c in set(columns)]
    defs = {config_name(c): (c,) for c in present}
    for name in BILATERAL:
        parts = tuple(c for c in (f"l{name}", f"r{name}") if c in present)
        if parts:
            defs[name] = parts
    for name, parts in UNIONS.items():
        cols = tuple(c for p in parts for c in defs.get(p, ()))
        if cols and name not in defs:
            defs[name] = cols
    if present:
        defs["VC"] = tuple(present)
    return defs


# -- config --------------------------------------------------------------------------------------


def subject_label(label) -> str:
    """Config subject → file prefix: ``1``, ``01``, ``sub01`` → ``sub-01``."""
    m = _SUBJECT.fullmatch(str(label))
    if not m:
        raise InputError(f"subject {label!r} is not a THINGS-fMRI subject (expected 1, 01 or sub-01)")
    return f"sub-{int(m.group(1)):02d}"


def options(dataset: dict, where: str | None = None) -> dict:
    at = f"config error at {where}.options" if where else "dataset option"
    given = dataset.get("options") or {}
    unknown = sorted(set(given) - set(OPTION_DEFAULTS))
    if unknown:
        raise InputError(f"{at}: unknown key(s) {unknown} for format {NAME} (allowed: {sorted(OPTION_DEFAULTS)})")
    opts = {**OPTION_DEFAULTS, **given}
    for key in ("betas", "images", "concepts_tsv"):
        if not isinstance(opts[key], str) or (key != "concepts_tsv" and not opts[key]):
            raise InputError(f"{at}.{key}: {opts[key]!r} must be a folder or file path")
    if opts["voxels"] not in ("rois", "all"):
        raise InputError(f"{at}.voxels: {opts['voxels']!r} must be rois (the published ROI columns' voxels) or all")
    return opts


def check(dataset: dict, where: str) -> None:
    options(dataset, where)
    if dataset.get("roi_source", "metadata") != "metadata":
        raise InputError(f"config error at {where}.roi_source: {NAME} reads its ROIs from the VoxelMetadata "
                         "columns; use roi_source: metadata")  # fmt: skip
    if dataset.get("unlabeled_fmri"):
        raise InputError(f"config error at {where}.unlabeled_fmri: only supported with format god_bdata")
    labels = {}
    for subject in dataset.get("subjects", []):
        try:
            labels.setdefault(subject_label(subject), []).append(subject)
        except InputError as exc:
            raise InputError(f"config error at {where}.subjects: {exc}") from None
    twice = [s for s in labels.values() if len(s) > 1]
    if twice:
        raise InputError(f"config error at {where}.subjects: {twice[0]} name the same subject")


# -- files ---------------------------------------------------------------------------------------


def _under(root, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else Path(root) / path


def _table(root, opts: dict, subject, kind: str) -> Path:
    return _under(root, opts["betas"]) / f"{subject_label(subject)}_{kind}"


def _subjects(dataset: dict, root, opts: dict) -> list[str]:
    subjects = list(dataset.get("subjects") or [])
    if subjects:
        return subjects
    found = sorted(p.name[: -len("_StimulusMetadata.csv")] for p in _under(root, opts["betas"]).glob("sub-*_StimulusMetadata.csv"))
    if not found:
        raise InputError(f"no sub-XX_StimulusMetadata.csv in {_under(root, opts['betas'])}")
    log.warning("%s: configured subjects unknown here, the stimulus set covers every subject in %s (%s)", NAME,
                _under(root, opts["betas"]), ", ".join(found))  # fmt: skip
    return found


def image_inputs(dataset: dict, root: str) -> list[str]:
    opts = options(dataset)
    files = [str(_table(root, opts, s, "StimulusMetadata.csv")) for s in dataset.get("subjects") or []]
    files.append(str(_under(root, opts["images"])))
    return files + ([str(_under(root, opts["concepts_tsv"]))] if opts["concepts_tsv"] else [])


def subject_inputs(dataset: dict, root: str, subject: str) -> dict[str, str]:
    opts = options(dataset)
    return {"subject": str(_table(root, opts, subject, "ResponseData.h5")),
            "stimulus_table": str(_table(root, opts, subject, "StimulusMetadata.csv")),
            "voxel_table": str(_table(root, opts, subject, "VoxelMetadata.csv"))}  # fmt: skip


def file_rois(dataset: dict, root: str, subject: str) -> tuple[str, set[str]] | None:
    """The ROI names the VoxelMetadata header defines (its first line only)."""
    path = _table(root, options(dataset), subject, "VoxelMetadata.csv")
    if not path.is_file():
        return None
    try:
        return str(path), set(roi_definitions(read_header(path)))
    except InputError:  # a broken file is the job's to report (one line, no output)
        return None


# -- stimuli -------------------------------------------------------------------------------------


def _stem(stimulus: str) -> str:
    name = stimulus.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def read_stimuli(dataset: dict, root: str, image_size: int) -> StimulusSet:
    """Test = test stimuli every configured subject saw; train = the union of their training
    stimuli; each sorted by name (module docstring)."""
    opts = options(dataset)
    where: dict[str, tuple[str, str, Path]] = {}  # name -> (stimulus, concept, table)
    tests, train = [], set()
    for subject in _subjects(dataset, root, opts):
        table = read_stimulus_table(_table(root, opts, subject, "StimulusMetadata.csv"))
        for kind, stim, concept in zip(table.trial_type, table.stimulus, table.concept):
            if kind == "catch":
                continue
            name = _stem(stim)
            other = where.setdefault(name, (stim, concept, table.path))
            if other[:2] != (stim, concept):
                raise InputError(f"{table.path}: image {name} is {concept}/{stim} here but {other[1]}/{other[0]} "
                                 f"in {other[2]}")  # fmt: skip
        kinds = {k: set(map(_stem, table.stimulus[table.trial_type == k])) for k in ("train", "test")}
        tests.append(kinds["test"])
        train |= kinds["train"]
        both = sorted(train & set().union(*tests))
        if both:
            raise InputError(f"{table.path}: stimulus {where[both[0]][0]} is both a train and a test image "
                             "(in this table or another subject's)")  # fmt: skip
    test = set.intersection(*tests)
    if len(set().union(*tests)) > len(test):
        log.info("%s: %d test images not seen by every configured subject dropped", NAME,
                 len(set().union(*tests)) - len(test))  # fmt: skip
    if not test or not train:
        raise InputError(f"{_under(root, opts['betas'])}: no {'test' if not test else 'train'} trials shared by the "
                         "configured subjects' stimulus tables")  # fmt: skip
    concepts = sorted({where[n][1] for n in train | test})
    category = {c: i for i, c in enumerate(concepts)}
    definitions = read_concepts(_under(root, opts["concepts_tsv"])) if opts["concepts_tsv"] else None
    folder = _under(root, opts["images"])
    if not folder.is_dir():
        raise InputError(f"THINGS image folder not found: {folder} (set options.images to the object_images folder)")

    def split(names: set[str]) -> ImageSplit:
        names = sorted(names)
        images = np.empty((len(names), image_size, image_size, 3), np.uint8)
        for i, name in enumerate(names):
            stim, concept, _ = where[name]
            path = folder / stim if "/" in stim else folder / concept / stim
            if not path.is_file():
                raise InputError(f"THINGS image not found: {path} (stimulus {stim}, concept {concept})")
            images[i] = open_image(path, image_size)
        part = ImageSplit(images=images, names=np.array(names, dtype=str), stimulus_id=np.full(len(names), np.nan),
                          category=np.array([category[where[n][1]] for n in names], np.int64))  # fmt: skip
        if definitions is not None:
            lacking = [where[n][1] for n in names if where[n][1] not in definitions]
            if lacking:
                raise InputError(f"{_under(root, opts['concepts_tsv'])}: no row for concept {lacking[0]!r}")
            part.captions = [[f"a photo of {definitions[where[n][1]][0]}", definitions[where[n][1]][1]]
                             for n in names]  # fmt: skip
        return part

    unpaired = dataset.get("unpaired_images")
    log.info("%s: %d train and %d test images of %d concepts", NAME, len(train), len(test), len(concepts))
    return StimulusSet(train=split(train), test=split(test), source=Path(root),
                       unpaired=load_unpaired_folder(unpaired, image_size) if unpaired else None)  # fmt: skip


# -- subjects ------------------------------------------------------------------------------------


def read_subject(files: dict, stimuli: StimulusSet, options: dict | None = None) -> SubjectRecording:
    """One subject's non-catch trials × the voxels of ``options.voxels`` (module docstring)."""
    voxels = (options or {}).get("voxels", OPTION_DEFAULTS["voxels"])
    table = read_stimulus_table(files["stimulus_table"])
    vox = read_voxel_table(files["voxel_table"], ROI_COLUMNS)
    store = open_response_store(files["subject"], len(table), table.path)
    if len(store.voxel_id) != len(vox.voxel_id) or not np.array_equal(store.voxel_id, vox.voxel_id):
        n = min(len(store.voxel_id), len(vox.voxel_id))
        diff = np.flatnonzero(store.voxel_id[:n] != vox.voxel_id[:n])
        at = (f"row {diff[0]} has voxel_id {store.voxel_id[diff[0]]} there and {vox.voxel_id[diff[0]]} in {vox.path}"
              if len(diff) else f"{len(store.voxel_id)} voxels there, {len(vox.voxel_id)} rows in {vox.path}")
        raise InputError(f"{store.path}: voxel_id does not match the voxel table: {at}")

    rows = {TRAIN: {n: i for i, n in enumerate(stimuli.train.names.tolist())},
            TEST: {n: i for i, n in enumerate(stimuli.test.names.tolist())}}  # fmt: skip
    keep, datatype, index, dropped = [], [], [], 0
    for t, (kind, stim) in enumerate(zip(table.trial_type, table.stimulus)):
        if kind == "catch":
            continue
        split = TRAIN if kind == "train" else TEST
        row = rows[split].get(_stem(stim))
        if row is None:
            if split == TEST and _stem(stim) not in rows[TRAIN]:
                dropped += 1  # a test image another configured subject did not see
                continue
            raise InputError(f"{table.path}:{t + 2}: {kind} stimulus {stim} is not among the {kind} images of "
                             f"{stimuli.source} (built for other subjects? rerun prepare_images)")  # fmt: skip
        keep.append(t)
        datatype.append(split)
        index.append(row)
    if dropped:
        log.info("%s: %d test trials of images outside the shared test set dropped", table.path, dropped)
    keep = np.array(keep, np.int64)
    pairs = np.stack([table.session[keep], table.run[keep]], axis=1)
    _, run = np.unique(pairs, axis=0, return_inverse=True)
    defs = roi_definitions(ROI_COLUMNS)
    in_roi = np.logical_or.reduce([vox.rois[c] for c in ROI_COLUMNS])
    sel = np.arange(len(vox.voxel_id)) if voxels == "all" else np.flatnonzero(in_roi)
    if not len(sel):
        raise InputError(f"{vox.path}: no voxel has a 1 in any ROI column ({', '.join(ROI_COLUMNS)})")
    fmri = read_responses(store, sel, keep)
    nc = None
    if vox.nc_testset is not None:
        nc = np.sqrt(np.clip(np.nan_to_num(vox.nc_testset[sel], nan=0.0), 0.0, 100.0) / 100.0)
    rois = {name: np.logical_or.reduce([vox.rois[c][sel] for c in cols]) for name, cols in defs.items()}
    attrs = {"format": NAME, "subject": store.path.name.split("_")[0], "voxels": voxels,
             "n_catch_trials": int((table.trial_type == "catch").sum()), "dropped_test_trials": dropped,
             "trial": keep, "voxel_id": vox.voxel_id[sel], "stimulus_table": str(table.path),
             "voxel_table": str(vox.path), "n_train": int(np.sum(np.array(datatype) == TRAIN)),
             "n_test": int(np.sum(np.array(datatype) == TEST))}  # fmt: skip
    return SubjectRecording(fmri=fmri, datatype=np.array(datatype, np.int64), run=run.ravel().astype(np.int64) + 1,
                            image_index=np.array(index, np.int64), voxel_xyz=vox.xyz[sel], rois=rois,
                            source=store.path, noise_ceiling=nc, attrs=attrs)  # fmt: skip


READER = Reader(
    name=NAME,
    description="THINGS-fMRI betas_csv tables (sub-XX_ResponseData.h5, Stimulus/VoxelMetadata.csv) + object images",
    rois=ROIS,
    image_inputs=image_inputs,
    subject_inputs=subject_inputs,
    read_stimuli=read_stimuli,
    read_subject=read_subject,
    check=check,
    file_rois=file_rois,
    stimuli_need_subjects=True,
    published_dataset="THINGS-fMRI",
)
