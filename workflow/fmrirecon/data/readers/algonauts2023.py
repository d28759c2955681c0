"""Format ``algonauts2023``: the Algonauts 2023 challenge derivative of NSD, as published.

Files under the dataset folder (the challenge's ``prepare_data`` script; rows = images sorted by
NSD id, fMRI z-scored per voxel within each NSD session and averaged over repeats)::

    subjNN/training_split/training_fmri/{lh,rh}_training_fmri.npy   (images, vertices) float32
    subjNN/training_split/training_images/train-XXXX_nsd-YYYYY.png  XXXX = fMRI row + 1, YYYYY = 0-based NSD id
    subjNN/roi_masks/{lh,rh}.<atlas>_challenge_space.npy           int label of each fMRI column
    subjNN/roi_masks/mapping_<atlas>.npy                           pickled dict label -> ROI name
    subjNN/roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy      (optional) fsaverage position of the columns

``subjNN/test_split`` is ignored: the challenge test fMRI is not public. Config subjects ``1``,
``01`` and ``subj01`` all mean folder ``subj01``. Nothing about sizes is fixed: vertex, image and
subject counts and the image size come from the files; images are centre-cropped and resized to the
config's ``image_size`` like GOD's (:func:`~.images.square_resize`).

**Split** (the test fMRI is not public, so the training images are split, deterministically).
The *split group* is ``options.split_subjects``, else every ``subjNN`` folder that has
``training_split/training_images``. ``n_test = round(test_fraction × the smallest group subject's
image count)``, capped at the number of images every group subject saw; the test images are the
``n_test`` of those shared images with the smallest ``sha256("<split_seed>:<nsd id>")`` (a ranking
that does not depend on numpy's random streams, and keeps an image's rank when subjects change).
Every other image of the group is training. Train and test images are sorted by NSD id. So a group
of one subject gets an exact ``test_fraction`` split of its own images (paper 004 splits each
subject 8:2); a group of several gets a test set that every one of them saw (the DAG needs every
test image to have fMRI of every subject of the dataset entry) — on the real data, where subjects
share at most the ~1000 NSD shared images, that is all of their shared images (the NSD convention).
The group never depends on the entry's ``subjects`` (prepare_images does not see them); a
configured subject outside ``split_subjects`` fails at parse time.

**ROIs** (names from the mapping files, made config-safe by dropping non-alphanumerics:
``FFA-1`` → ``FFA1``; hemispheres concatenated lh then rh, as the challenge devkit does):

- each label > 0 of each atlas (``V1v``, ``FFA1``, ``mTLfaces``, ``early``, ...); a name two atlases
  both use is also offered per atlas as ``<atlas><name>`` (``flocfacesOFA``) and stands for their union;
- unions within an atlas: ``V1v``+``V1d`` → ``V1`` (names ending in digit + v/d), ``FFA-1``+``FFA-2`` →
  ``FFA`` (``-<n>`` suffixes), ``hV4`` → ``V4``; every labelled vertex of an atlas as the atlas
  name (``prfvisualrois``, ``flocfaces``, ``streams``); ``all`` = every vertex of the challenge space.
  A name the files define themselves is never replaced by a union; config ``rois:`` unions still work.

**Options** (``datasets[].options``): ``split_subjects`` (list, default: every subject folder),
``test_fraction`` (default 0.2), ``split_seed`` (int, default 0; the global ``seed`` does not reach
readers), ``atlases`` (default: every ``mapping_<atlas>.npy`` of the subject), ``labels_csv``
(a per-subject CSV, ``{subject}`` = the folder name, relative to the dataset folder; see
:func:`read_labels_csv`).

**Categories**: ``ImageSplit.category`` is -1: NSD/COCO images carry several labels, and a single int
cannot hold them. The labels CSV is checked when the images are prepared and is readable with
:func:`read_labels` for a method that needs it.

The fMRI is ``prenormalized`` (the challenge z-scored it per session), runs are unknown (0).
``voxel_xyz`` holds (hemisphere 0/1, fsaverage vertex index or, without the all-vertices file, the
column within the hemisphere, NaN): surface data has no millimetre coordinates here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ...errors import InputError
from .algonauts_files import (
    ImageLabels,
    _alnum,
    _atlases_in,
    _listing,
    _load_fmri,
    _load_labels,
    _scan_images,
    list_images,
    read_labels_csv,
    read_mapping,
    roi_definitions,
    split_ids,
)  # fmt: skip
from .base import TEST, TRAIN, ImageSplit, Reader, StimulusSet, SubjectRecording
from .images import load_unpaired_folder, open_image

log = logging.getLogger(__name__)

HEMIS = ("lh", "rh")
#: The atlases the challenge released (used only when a subject's roi_masks folder is not there yet).
PUBLISHED_ATLASES = ("prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams")
#: The released atomic labels, config-safe; the roster prepared files record membership in.
ROIS = ("V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4", "EBA", "FBA1", "FBA2", "mTLbodies", "OFA", "FFA1",
        "FFA2", "mTLfaces", "aTLfaces", "OPA", "PPA", "RSC", "OWFA", "VWFA1", "VWFA2", "mfswords", "mTLwords",
        "early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal")  # fmt: skip
OPTION_DEFAULTS = {"split_subjects": None, "test_fraction": 0.2, "split_seed": 0, "atlases": None, "labels_csv": ""}

_SUBJECT = re.compile(r"(?:subj)?(\d+)")
_SUBJECT_DIR = re.compile(r"subj\d+")
_ATLAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# -- config --------------------------------------------------------------------------------------


def subject_folder(label) -> str:
    """Config subject label → folder: ``1``, ``01``, ``subj01`` → ``subj01``."""
    m = _SUBJECT.fullmatch(str(label))
    if not m:
        raise InputError(f"subject {label!r} is not an Algonauts subject (expected 1..8, 01..08 or subj01..subj08)")
    return f"subj{int(m.group(1)):02d}"


def options(dataset: dict, where: str | None = None) -> dict:
    """The format's options with defaults, checked (one line on a bad value)."""
    at = f"config error at {where}.options" if where else "dataset option"
    given = dataset.get("options") or {}
    unknown = sorted(set(given) - set(OPTION_DEFAULTS))
    if unknown:
        raise InputError(f"{at}: unknown key(s) {unknown} for format algonauts2023 "
                         f"(allowed: {sorted(OPTION_DEFAULTS)})")
    opts = {**OPTION_DEFAULTS, **given}
    frac = opts["test_fraction"]
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
        raise InputError(f"{at}.test_fraction: {frac!r} must be a number between 0 and 1 (e.g. 0.2 for 8:2)")
    seed = opts["split_seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"{at}.split_seed: {seed!r} must be an integer >= 0")
    for key in ("split_subjects", "atlases"):
        value = opts[key]
        names = isinstance(value, list) and value and all(isinstance(v, (str, int)) for v in value)
        if value is not None and not names:
            raise InputError(f"{at}.{key}: {value!r} must be a non-empty list of names")
    if opts["split_subjects"] is not None:
        opts["split_subjects"] = sorted({subject_folder(s) for s in opts["split_subjects"]})
    if opts["atlases"] is not None:
        bad = [a for a in opts["atlases"] if not (isinstance(a, str) and _ATLAS.fullmatch(a) and ".." not in a)]
        if bad:
            raise InputError(f"{at}.atlases: {bad} are not atlas names (e.g. prf-visualrois, floc-faces, streams)")
        if len({_alnum(a) for a in opts["atlases"]}) != len(opts["atlases"]):
            raise InputError(f"{at}.atlases: {opts['atlases']} names an atlas twice")
    pattern = opts["labels_csv"]
    if not isinstance(pattern, str):
        raise InputError(f"{at}.labels_csv: {pattern!r} must be a file path (with an optional {{subject}})")
    try:
        pattern.format(subject="subj01")
    except (KeyError, IndexError, ValueError):
        raise InputError(f"{at}.labels_csv: {pattern!r} must be a file pattern whose only placeholder is "
                         "{subject}") from None
    return opts


def check(dataset: dict, where: str) -> None:
    opts = options(dataset, where)
    if dataset.get("roi_source", "metadata") != "metadata":
        raise InputError(f"config error at {where}.roi_source: algonauts2023 is surface data; its ROIs come from "
                         "roi_masks/ (roi_source: metadata)")  # fmt: skip
    if dataset.get("unlabeled_fmri"):
        raise InputError(f"config error at {where}.unlabeled_fmri: only supported with format god_bdata")
    try:
        folders = {s: subject_folder(s) for s in dataset.get("subjects", [])}
    except InputError as exc:
        raise InputError(f"config error at {where}.subjects: {exc}") from None
    twice = sorted({f for f in folders.values() if list(folders.values()).count(f) > 1})
    if twice:
        raise InputError(f"config error at {where}.subjects: {[s for s, f in folders.items() if f in twice]} "
                         f"all name folder {twice[0]}")  # fmt: skip
    group = opts["split_subjects"]
    outside = [s for s, f in folders.items() if group is not None and f not in group]
    if outside:
        raise InputError(f"config error at {where}.subjects: {outside} not in options.split_subjects {group}: the test "
                         "images are drawn from the images the split subjects share, so every configured subject "
                         "must be one of them (or make one dataset entry per subject)")  # fmt: skip
    root = Path(dataset.get("path") or "")
    for folder in folders.values():  # an atlas typo fails the dry run when the files are there
        masks = root / folder / "roi_masks"
        if opts["atlases"] and masks.is_dir():
            for atlas in opts["atlases"]:
                if not (masks / f"mapping_{atlas}.npy").is_file():
                    mapping = masks / f"mapping_{atlas}.npy"
                    raise InputError(f"config error at {where}.options.atlases: atlas {atlas!r} not found: no "
                                     f"{mapping} (atlases there: {_listing(masks)})")  # fmt: skip


# -- files ---------------------------------------------------------------------------------------


def _atlases(dataset: dict, masks: Path) -> list[str]:
    return list(options(dataset)["atlases"] or _atlases_in(masks) or PUBLISHED_ATLASES)


def _group(dataset: dict, root) -> list[str]:
    """The split group's subject folders (see the module docstring), sorted."""
    group = options(dataset)["split_subjects"]
    if group is not None:
        return group
    root = Path(root)
    found = sorted(p.name for p in root.iterdir() if _SUBJECT_DIR.fullmatch(p.name)
                   and (p / "training_split" / "training_images").is_dir()) if root.is_dir() else []  # fmt: skip
    if not found:
        raise InputError(f"{root}: no subjNN/training_split/training_images folders (the Algonauts 2023 layout)")
    return found


def _image_folder(root, folder: str) -> Path:
    return Path(root) / folder / "training_split" / "training_images"


def image_inputs(dataset: dict, root: str) -> list[str]:
    try:
        group = _group(dataset, root)
    except InputError:  # the tree is not there yet: Snakemake names the missing folder
        return [str(root)]
    files = [str(_image_folder(root, f)) for f in group]
    pattern = options(dataset)["labels_csv"]
    return files + ([str(Path(root) / pattern.format(subject=f)) for f in group] if pattern else [])


def subject_inputs(dataset: dict, root: str, subject: str) -> dict[str, str]:
    base = Path(root) / subject_folder(subject)
    fmri, masks = base / "training_split" / "training_fmri", base / "roi_masks"
    files = {"subject": str(fmri / "lh_training_fmri.npy"), "fmri_rh": str(fmri / "rh_training_fmri.npy"),
             "image_folder": str(_image_folder(root, base.name))}  # fmt: skip
    for atlas in _atlases(dataset, masks):
        key = _alnum(atlas)
        files[f"mapping_{key}"] = str(masks / f"mapping_{atlas}.npy")
        for hemi in HEMIS:
            files[f"{hemi}_{key}"] = str(masks / f"{hemi}.{atlas}_challenge_space.npy")
    for hemi in HEMIS:
        path = masks / f"{hemi}.all-vertices_fsaverage_space.npy"
        if path.is_file():
            files[f"fsaverage_{hemi}"] = str(path)
    return files


# -- split ---------------------------------------------------------------------------------------


# -- labels --------------------------------------------------------------------------------------


def read_labels(dataset: dict, root, subject) -> ImageLabels:
    """The labels CSV (``options.labels_csv``) of one subject, aligned to its training images."""
    pattern = options(dataset)["labels_csv"]
    if not pattern:
        raise InputError("dataset option labels_csv is not set: no image labels for format algonauts2023")
    folder = subject_folder(subject)
    return read_labels_csv(Path(root) / pattern.format(subject=folder), list_images(_image_folder(root, folder)))


def _check_labels(dataset: dict, root, lists: dict[str, np.ndarray]) -> None:
    """Every group subject's labels CSV reads, and shared images get the same cocoId everywhere."""
    seen: dict[int, tuple[int, Path]] = {}
    pattern = options(dataset)["labels_csv"]
    for folder, ids in lists.items():
        path = Path(root) / pattern.format(subject=folder)
        labels = read_labels_csv(path, ids)
        for nsd, coco in zip(ids.tolist(), labels.coco_id.tolist()):
            other = seen.setdefault(nsd, (coco, path))
            if other[0] != coco:
                raise InputError(f"{path}: NSD image {nsd} has cocoId {coco} but {other[0]} in {other[1]} "
                                 "(are the rows in image order?)")  # fmt: skip


# -- stimuli -------------------------------------------------------------------------------------


def _image_split(ids: np.ndarray, images: np.ndarray) -> ImageSplit:
    return ImageSplit(images=images, names=np.array([f"nsd-{i:05d}" for i in ids.tolist()], dtype=str),
                      stimulus_id=ids.astype(np.float64), category=np.full(len(ids), -1, dtype=np.int64))


def read_stimuli(dataset: dict, root: str, image_size: int) -> StimulusSet:
    """The split group's images: ``test`` drawn from the shared images, ``train`` every other one."""
    opts = options(dataset)
    scans = {f: _scan_images(_image_folder(root, f)) for f in _group(dataset, root)}
    lists = {f: ids for f, (ids, _) in scans.items()}
    test_ids, train_ids = split_ids(lists, opts["test_fraction"], opts["split_seed"])
    if not len(train_ids):
        raise InputError(f"{root}: the split leaves no training images (lower options.test_fraction)")
    if opts["labels_csv"]:
        _check_labels(dataset, root, lists)
    source: dict[int, Path] = {}
    for folder, (ids, names) in scans.items():
        for nsd, name in zip(ids.tolist(), names):
            source.setdefault(nsd, _image_folder(root, folder) / name)
    test_set = set(test_ids.tolist())
    for folder, ids in lists.items():
        n_test = sum(i in test_set for i in ids.tolist())
        log.info("%s: %d training, %d test images (test fraction %.3f)", folder, len(ids) - n_test, n_test,
                 n_test / len(ids))  # fmt: skip

    def load(ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), image_size, image_size, 3), dtype=np.uint8)
        for i, nsd in enumerate(ids.tolist()):
            out[i] = open_image(source[nsd], image_size)
        return out

    unpaired = dataset.get("unpaired_images")
    return StimulusSet(train=_image_split(train_ids, load(train_ids)), test=_image_split(test_ids, load(test_ids)),
                       unpaired=load_unpaired_folder(unpaired, image_size) if unpaired else None,
                       source=Path(root))  # fmt: skip


# -- subject -------------------------------------------------------------------------------------


def _mappings(files: dict) -> dict[str, tuple[str, dict[int, str]]]:
    """atlas → (file key, mapping) for every ``mapping_<key>`` of ``files``."""
    out = {}
    for key in sorted(files):
        if key.startswith("mapping_"):
            path = Path(files[key])
            out[path.name[len("mapping_"):-len(".npy")]] = (key[len("mapping_"):], read_mapping(path))
    return out


def read_subject(files: dict, stimuli: StimulusSet, options: dict | None = None) -> SubjectRecording:
    """One subject's training fMRI (lh then rh columns), split by the images of ``stimuli``."""
    lh_path, rh_path, folder = Path(files["subject"]), Path(files["fmri_rh"]), Path(files["image_folder"])
    ids = list_images(folder)
    fmri = {"lh": _load_fmri(lh_path, len(ids), folder), "rh": _load_fmri(rh_path, len(ids), folder)}
    paths = {"lh": lh_path, "rh": rh_path}
    mappings = _mappings(files)
    if not mappings:
        raise InputError(f"{folder.parent.parent / 'roi_masks'}: no mapping_<atlas>.npy files")
    labels: dict[str, np.ndarray] = {}
    for atlas, (key, mapping) in mappings.items():
        parts = [_load_labels(Path(files[f"{h}_{key}"]), fmri[h].shape[1], paths[h]) for h in HEMIS]
        for hemi, part in zip(HEMIS, parts):
            unknown = sorted(set(np.unique(part[part > 0]).tolist()) - set(mapping))
            if unknown:
                raise InputError(f"{files[f'{hemi}_{key}']}: label {unknown[0]} is not in {files[f'mapping_{key}']} "
                                 f"(labels there: {sorted(mapping)})")  # fmt: skip
        labels[atlas] = np.concatenate(parts)
    n_voxels = sum(x.shape[1] for x in fmri.values())
    rois = {name: (np.logical_or.reduce([np.isin(labels[a], list(ls)) for a, ls in parts]) if parts
                   else np.ones(n_voxels, dtype=bool))
            for name, parts in roi_definitions({a: m for a, (_, m) in mappings.items()}).items()}  # fmt: skip
    datatype, image_index = _design(ids, stimuli, folder)
    x = np.concatenate([np.asarray(fmri["lh"], dtype=np.float32), np.asarray(fmri["rh"], dtype=np.float32)], axis=1)
    return SubjectRecording(
        fmri=x, datatype=datatype, run=np.zeros(len(ids), dtype=np.int64), image_index=image_index,
        voxel_xyz=_vertex_positions(files, fmri), rois=rois, source=lh_path, prenormalized=True,
        attrs={"format": "algonauts2023", "subject": folder.parent.parent.name, "atlases": sorted(mappings),
               "n_vertices_lh": int(fmri["lh"].shape[1]), "n_vertices_rh": int(fmri["rh"].shape[1]),
               "n_train": int((datatype == TRAIN).sum()), "n_test": int((datatype == TEST).sum())})  # fmt: skip


def _design(ids: np.ndarray, stimuli: StimulusSet, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """DataType (train 1 / test 2) and row in ``stimuli.train`` / ``.test`` of each fMRI row."""
    rows = {split: {round(s): i for i, s in enumerate(np.asarray(part.stimulus_id).tolist()) if np.isfinite(s)}
            for split, part in ((TRAIN, stimuli.train), (TEST, stimuli.test))}  # fmt: skip
    datatype = np.zeros(len(ids), dtype=np.int64)
    index = np.full(len(ids), -1, dtype=np.int64)
    for i, nsd in enumerate(ids.tolist()):
        for split in (TEST, TRAIN):
            if nsd in rows[split]:
                datatype[i], index[i] = split, rows[split][nsd]
                break
    subject = folder.parent.parent.name
    lost = np.flatnonzero(index < 0)
    if len(lost):
        raise InputError(f"{folder}: {len(lost)} of {subject}'s images (first nsd-{ids[lost[0]]:05d}) are in "
                         f"neither split of {stimuli.source}: {subject} is not in the split group; add it to "
                         "options.split_subjects")  # fmt: skip
    absent = sorted(set(range(len(stimuli.test))) - set(index[datatype == TEST].tolist()))
    if absent:
        raise InputError(f"{folder}: {subject} has no fMRI for {len(absent)} of the {len(stimuli.test)} test images "
                         f"(first {stimuli.test.names[absent[0]]}); the test images must be ones every subject of the "
                         "entry saw: add it to options.split_subjects")  # fmt: skip
    if not (datatype == TRAIN).any():
        raise InputError(f"{folder}: every image of {subject} is a test image; no training samples")
    return datatype, index


def _vertex_positions(files: dict, fmri: dict) -> np.ndarray:
    """(V, 3): hemisphere (0 lh, 1 rh), fsaverage vertex (or column in the hemisphere), NaN."""
    parts = []
    for h, hemi in enumerate(HEMIS):
        n = fmri[hemi].shape[1]
        where = np.arange(n)
        path = files.get(f"fsaverage_{hemi}")
        if path:
            try:
                full = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise InputError(f"{path}: not a readable .npy array: {exc}") from None
            if full.ndim != 1:
                raise InputError(f"{path}: shape {full.shape}, expected one value per fsaverage vertex")
            where = np.flatnonzero(full)
            if len(where) != n:
                raise InputError(f"{path}: {len(where)} challenge vertices, but the {hemi} fMRI has {n} columns")
        parts.append(np.stack([np.full(n, h, dtype=np.float64), where.astype(np.float64), np.full(n, np.nan)], axis=1))
    return np.concatenate(parts)


def file_rois(dataset: dict, root: str, subject: str) -> tuple[str, set[str]] | None:
    """The ROI names the subject's mapping files define (tiny pickles, read safely)."""
    masks = Path(root) / subject_folder(subject) / "roi_masks"
    if not masks.is_dir():
        return None
    try:
        mappings = {atlas: read_mapping(masks / f"mapping_{atlas}.npy") for atlas in _atlases(dataset, masks)}
    except InputError:  # a missing or broken file is the job's to report (one line, no output)
        return None
    return str(masks), set(roi_definitions(mappings))


READER = Reader(
    name="algonauts2023",
    description="Algonauts 2023 challenge (NSD) subjNN/training_split + roi_masks",
    rois=ROIS,
    image_inputs=image_inputs,
    subject_inputs=subject_inputs,
    read_stimuli=read_stimuli,
    read_subject=read_subject,
    check=check,
    file_rois=file_rois,
    published_dataset="Algonauts 2023",
)
