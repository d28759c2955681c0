"""Format ``bold5000``: BOLD5000 release 2.0 as MinD-Vis and CAD (paper 001) use it, or release 1's
ROI files (``options.release: 1``, see the end).

Files under the dataset folder (``CSIk`` = subject k, 1..4)::

    BOLD5000_GLMsingle_ROI_betas/py/CSIk_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{LH,RH}{EarlyVis,LOC,OPA,PPA,RSC}.npy
                                       (trials, voxels) GLMsingle betas, rows in presentation order
    BOLD5000_Stimuli/Stimuli_Presentation_Lists/CSIk/CSIk_sessNN/*.txt   one image name per line, per run
    BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt       the repeated images = the test set
    BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/<name>.{jpg,JPEG,...}

**Subjects**: config labels ``CSI1`` … ``CSI4`` or ``1`` … ``4`` (both mean ``CSIk``; one entry may
not name a subject twice).

**Trials**: a subject's session folders, then the run lists in each, are read in natural order
(``sess2`` before ``sess10``; the same as MinD-Vis' string sort on the zero-padded published names),
one trial per non-empty line; a leading ``rep_`` and the extension are dropped from each name. Their
count must equal the rows of every ROI file. ``run`` of a trial is its session
(``options.run_unit: session``, the default: GLMsingle fits each session, and ``normalization: run``
then z-scores within sessions as for NSD) or its run list (``run_unit: run``).

**Split** (MinD-Vis' ``create_BOLD5000_dataset``): test = the images of the repeated list, every
trial kept as a test trial (rule ``mask_roi`` averages them per image, as for GOD and NSD); train =
every other trial, one sample each. The image set is shared by the entry's subjects, so the test
images are those of the list that *every* configured subject saw (CSI4, who did 9 of 15 sessions,
lacks some: in one entry with CSI1–3 it shrinks their test set too; give CSI4 an entry of its own
to keep theirs whole, as MinD-Vis evaluates each subject on the repeated images it saw). Trials of
a repeated image outside that shared set are left out (``attrs['dropped_trials']``), never used
for training. Train images = every other image any configured subject saw; both sets sorted by name. An image's
name is its file stem; its category is the synset of an ImageNet name (``n01440764_10110`` → 1440764,
as for GOD) and -1 for COCO and Scene images (``Image_Labels/`` is not read).

**ROIs**: ``LHEarlyVis`` … ``RHRSC`` (one per file), ``EarlyVis`` … ``RSC`` (both hemispheres) and
``VC`` (all ten files). Voxel columns are concatenated in MinD-Vis' order: EarlyVis, LOC, OPA, PPA,
RSC, each LH then RH. There are no voxel coordinates: ``voxel_xyz`` holds (hemisphere 0 LH / 1 RH,
column within its ROI file, NaN). Unlike MinD-Vis, no wrap-padding and no scalar z-score over all
trials happen here: normalisation is the entry's ``normalization`` (per voxel), and CAD pads itself.

**Options**: ``release`` (2, or 1), ``beta_type`` (``TYPED-FITHRF-GLMDENOISE-RR``; release 2 only),
``run_unit`` (``session`` or ``run``; release 2 only), ``tr`` (1, 2, 3, 4, 5 or 34, default 34;
release 1 only).

**Release 1** (``release: 1``; figshare ``BOLD5000_ROIs.zip``, unpacked beside ``BOLD5000_Stimuli/``)::

    ROIs/CSIk/mat/CSIk_ROIs_TR{1,2,3,4,5,34}.mat   one MATLAB file per TR, ten variables
                                                   LHEarlyVis … RHRSC, each (trials, voxels)
    ROIs/stim_lists/CSI0k_stim_lists.txt           one image file name per line, line i = row i

The ``tr`` option picks the file (default ``TR34``). The ten variables are the same ROI labels as
release 2's files and are concatenated in the same MinD-Vis order; all ten must be there. Stim-list
names are reduced like the presentation lists' (``rep_`` and the extension dropped). The images,
the repeated list and the split are release 2's (``BOLD5000_Stimuli/`` is needed as well): test = the
repeated images (every trial kept, averaged per image by ``mask_roi``), train = the rest. Release 1
records no sessions or runs: every trial has ``run`` 1, so ``normalization: run`` z-scores over all
of the subject's trials (``run_unit`` is refused). Values are taken as stored (cast to float32).

What the format is, and where each fact comes from (public material read for this reader; no
release-1 file was at hand):

- Paths ``ROIs/CSIk/mat/CSIk_ROIs_TR{1,2,3,4,5}.mat``, ``…_TR34.mat`` and
  ``ROIs/stim_lists/CSI0k_stim_lists.txt`` (``CSI01`` … ``CSI04``), in ``BOLD5000_ROIs.zip``
  (figshare file 12965447), which also holds ``ROIs/CSIk/h5/`` copies not read here: public
  loaders that open exactly these paths (e.g. ``Michedev/VAE-FMRI-BOLD5000``
  ``anaconda-project.yml`` and ``dataset/roi.py``; several ridge/decoding scripts indexed by the
  code search that load all six TR files per subject with ``scipy.io.loadmat``).
- MATLAB v5-family files, not v7.3: every public loader reads them with ``scipy.io.loadmat``
  (which refuses v7.3) and drops the ``__header__``/``__version__``/``__globals__`` keys that
  loadmat adds to a v5 file. A v7.3 file is refused here with one line, never guessed.
- Variables ``LHEarlyVis RHEarlyVis LHLOC RHLOC LHOPA RHOPA LHPPA RHPPA LHRSC RHRSC``, exactly ten:
  ``Michedev/VAE-FMRI-BOLD5000`` ``dataset/roi.py`` (``brain_areas``), and a public test suite
  asserting that the ROI keys of a loaded file are exactly these ten.
- Orientation (trials, voxels), one row per trial: that test suite asserts CSI1's shapes
  (5254, 210) for LHEarlyVis … (5254, 86) for LHRSC; the loaders index ``data[roi][i]`` with
  stim-list line ``i``. 5254 trials for CSI1-3 and 3108 for CSI4 is also BOLD5000's own table
  (``BOLD5000-dataset/BOLD5000`` README).
- Stim list: one name per line in trial order, the image file name with its extension (loaders
  open ``Presented_Stimuli/<kind>/<line>``), repeats prefixed ``rep_`` (loaders strip the first
  four characters of ``rep`` lines; the test suite drops the ``rep_`` lines of CSI1-3 and gets
  4916 = the number of unique images, so a first showing carries no prefix).
- Not confirmed: the dtype (taken as any real numeric type and cast to float32), and what
  ``TR34`` holds. One public loader describes it as the ROI data 4-8 s after onset (TR = 2 s,
  so TR3 + TR4), consistent with the average of TR3 and TR4, but the BOLD5000 text saying so (the
  figshare README / the Scientific Data paper's data records) could not be read here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ...errors import InputError
from .base import TEST, TRAIN, ImageSplit, Reader, StimulusSet, SubjectRecording
from .bold5000_files import (
    AREAS,
    BETA_TYPE,
    BETAS_DIR,
    HEMIS,
    LABELS,
    LISTS_DIR,
    PRESENTED_DIR,
    RELEASE1_DIR,
    REPEATED_LIST,
    STIM_LISTS_DIR,
    TRS,
    beta_file,
    image_index,
    load_betas,
    load_roi_mat,
    mat_variables,
    missing_hemisphere,
    natural_key,
    read_presentations,
    read_repeated,
    read_stim_list,
    roi_definitions,
    roi_files,
    roi_mat_file,
    stim_list_file,
)  # fmt: skip
from .images import load_unpaired_folder, open_image

log = logging.getLogger(__name__)

OPTION_DEFAULTS = {"release": 2, "beta_type": BETA_TYPE, "run_unit": "session", "tr": 34}
_RELEASE2_ONLY = ("beta_type", "run_unit")
_SUBJECT = re.compile(r"(?:CSI)?0*([1-9]\d*)", re.IGNORECASE)
_BETA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_IMAGENET = re.compile(r"n(\d{8})_.+")


def subject_name(label) -> str:
    """Config subject label → ``CSIk``: ``1`` and ``CSI1`` (any case) both mean ``CSI1``."""
    m = _SUBJECT.fullmatch(str(label))
    if not m:
        raise InputError(f"subject {label!r} is not a BOLD5000 subject (expected CSI1..CSI4 or 1..4)")
    return f"CSI{int(m.group(1))}"


def options(dataset: dict, where: str | None = None) -> dict:
    """The format's options with defaults, checked (one line on a bad value)."""
    at = f"config error at {where}.options" if where else "dataset option"
    given = dataset.get("options") or {}
    unknown = sorted(set(given) - set(OPTION_DEFAULTS))
    if unknown:
        raise InputError(f"{at}: unknown key(s) {unknown} for format bold5000 (allowed: {sorted(OPTION_DEFAULTS)})")
    opts = {**OPTION_DEFAULTS, **given}
    if type(opts["release"]) is not int or opts["release"] not in (1, 2):
        raise InputError(f"{at}.release: {opts['release']!r} is not a BOLD5000 release (1: ROIs/CSIk/mat/*.mat + "
                         "ROIs/stim_lists; 2: BOLD5000_GLMsingle_ROI_betas/py)")  # fmt: skip
    if type(opts["tr"]) is not int or opts["tr"] not in TRS:
        raise InputError(f"{at}.tr: {opts['tr']!r} is not a release-1 TR file (one of {list(TRS)}: "
                         "CSIk_ROIs_TR<tr>.mat)")  # fmt: skip
    if opts["release"] == 2 and "tr" in given:
        raise InputError(f"{at}.tr: only with release: 1 (release 2's GLMsingle betas are one estimate per trial)")
    if opts["release"] == 1:
        mixed = [k for k in _RELEASE2_ONLY if k in given]
        if mixed:
            raise InputError(f"{at}.{mixed[0]}: only with release: 2 (release 1's ROI files and stim list have no "
                             "beta versions, sessions or runs)")  # fmt: skip
    if not (isinstance(opts["beta_type"], str) and _BETA_TYPE.fullmatch(opts["beta_type"])):
        raise InputError(f"{at}.beta_type: {opts['beta_type']!r} is not a beta version name (e.g. {BETA_TYPE})")
    if opts["run_unit"] not in ("session", "run"):
        raise InputError(f"{at}.run_unit: {opts['run_unit']!r} must be session or run")
    return opts


def _betas_dir(root) -> Path:
    return Path(root) / BETAS_DIR


def check(dataset: dict, where: str) -> None:
    opts = options(dataset, where)
    if dataset.get("roi_source", "metadata") != "metadata":
        raise InputError(f"config error at {where}.roi_source: BOLD5000 has no voxel coordinates; its ROIs are its "
                         "files (roi_source: metadata)")  # fmt: skip
    if dataset.get("unlabeled_fmri"):
        raise InputError(f"config error at {where}.unlabeled_fmri: only supported with format god_bdata")
    try:
        names = {s: subject_name(s) for s in dataset.get("subjects", [])}
    except InputError as exc:
        raise InputError(f"config error at {where}.subjects: {exc}") from None
    twice = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if twice:
        raise InputError(f"config error at {where}.subjects: {[s for s, n in names.items() if n in twice]} all name "
                         f"{twice[0]}")  # fmt: skip
    if opts["release"] == 1:
        root = Path(dataset.get("path") or "")
        if dataset.get("path") and (root / RELEASE1_DIR).is_dir():  # real data: a missing file fails the dry run
            for csi in names.values():
                for path in (roi_mat_file(root, csi, opts["tr"]), stim_list_file(root, csi)):
                    if not path.is_file():
                        raise InputError(f"config error at {where}: {path}: not found (release 1, tr {opts['tr']})")
        return
    betas = _betas_dir(dataset.get("path") or "")
    if dataset.get("path") and betas.is_dir():  # real data: a broken tree fails the dry run
        for csi in names.values():
            problem = missing_hemisphere(roi_files(betas, csi, opts["beta_type"]), betas, csi, opts["beta_type"])
            if problem:
                raise InputError(f"config error at {where}: {problem}")


# -- files ---------------------------------------------------------------------------------------


def image_inputs(dataset: dict, root: str) -> list[str]:
    lists = STIM_LISTS_DIR if options(dataset)["release"] == 1 else LISTS_DIR
    return [f"{root}/{lists}", f"{root}/{REPEATED_LIST}", f"{root}/{PRESENTED_DIR}"]


def subject_inputs(dataset: dict, root: str, subject: str) -> dict[str, str]:
    """``subject``: the subject's first ROI file on disk (``LHEarlyVis`` before the tree exists; the
    other files are found beside it at read time); ``lists``: its presentation lists folder;
    ``repeated``: the repeated-image list. Release 1: ``subject`` is the ``CSIk_ROIs_TR<tr>.mat``
    file, ``lists`` the subject's stim list."""
    csi, opts = subject_name(subject), options(dataset)
    repeated = str(Path(root) / REPEATED_LIST)
    if opts["release"] == 1:
        return {"subject": str(roi_mat_file(root, csi, opts["tr"])), "lists": str(stim_list_file(root, csi)),
                "repeated": repeated}  # fmt: skip
    beta_type = opts["beta_type"]
    found = roi_files(_betas_dir(root), csi, beta_type)
    first = next(iter(found.values()), beta_file(_betas_dir(root), csi, LABELS[0], beta_type))
    return {"subject": str(first), "lists": str(Path(root) / LISTS_DIR / csi), "repeated": str(Path(root) / REPEATED_LIST)}


def file_rois(dataset: dict, root: str, subject: str) -> tuple[str, set[str]] | None:
    """The ROIs the subject's file names define (no file is opened); release 1: the ROI variables in
    the TR file's headers."""
    opts = options(dataset)
    if opts["release"] == 1:
        path = roi_mat_file(root, subject_name(subject), opts["tr"])
        if not path.is_file():
            return None
        return str(path), set(roi_definitions(n for n in mat_variables(path) if n in LABELS))
    betas = _betas_dir(root)
    if not betas.is_dir():
        return None
    found = roi_files(betas, subject_name(subject), options(dataset)["beta_type"])
    return str(betas), set(roi_definitions(found))


# -- stimuli -------------------------------------------------------------------------------------


def _subjects(dataset: dict, root: Path) -> list[str]:
    if dataset.get("subjects"):
        return [subject_name(s) for s in dataset["subjects"]]
    if options(dataset)["release"] == 1:
        names = sorted(p.name for p in (root / STIM_LISTS_DIR).glob("CSI*_stim_lists.txt"))
        found = [subject_name(n.split("_")[0]) for n in names if _SUBJECT.fullmatch(n.split("_")[0])]
        if not found:
            raise InputError(f"{root / STIM_LISTS_DIR}: no CSI0k_stim_lists.txt files")
        return found
    lists = root / LISTS_DIR
    found = sorted((d.name for d in lists.iterdir() if d.is_dir() and _SUBJECT.fullmatch(d.name)),
                   key=natural_key) if lists.is_dir() else []  # fmt: skip
    if not found:
        raise InputError(f"{lists}: no CSIk folders of presentation lists")
    return found


def synset(name: str) -> int:
    """The category of an ImageNet image (``n01440764_10110`` → 1440764, as GOD's); -1 for COCO and Scene
    images, whose labels (``Image_Labels/``) are not read."""
    m = _IMAGENET.fullmatch(name)
    return int(m.group(1)) if m else -1


def split_names(seen: dict[str, set[str]], repeated: list[str]) -> tuple[list[str], list[str]]:
    """(train, test) image names: test = the repeated images every subject saw, train = every other
    image some subject saw that is not a repeated one; both sorted."""
    test = sorted(n for n in repeated if all(n in s for s in seen.values()))
    train = sorted(set().union(*seen.values()) - set(repeated))
    return train, test


def read_stimuli(dataset: dict, root: str, image_size: int) -> StimulusSet:
    """The configured subjects' images: the repeated images they all saw (test), the others (train)."""
    root = Path(root)
    subjects = _subjects(dataset, root)
    if options(dataset)["release"] == 1:
        shown = {csi: read_stim_list(stim_list_file(root, csi)) for csi in subjects}
    else:
        shown = {csi: read_presentations(root / LISTS_DIR / csi) for csi in subjects}
    repeated = read_repeated(root / REPEATED_LIST)
    train, test = split_names({csi: set(p.names) for csi, p in shown.items()}, repeated)
    if not test:
        raise InputError(f"{root / REPEATED_LIST}: none of its {len(repeated)} images was seen by every subject "
                         f"{subjects}; no test set")  # fmt: skip
    unshared = [n for n in repeated if n not in test and any(n in p.names for p in shown.values())]
    if unshared:
        log.info("%d repeated images are not seen by every subject of %s (first %s): left out of the test set "
                 "and their trials dropped", len(unshared), subjects, unshared[0])  # fmt: skip
    files = image_index(root / PRESENTED_DIR)
    for csi, p in shown.items():  # every presented image has its file
        absent = [i for i, n in enumerate(p.names) if n not in files]
        if absent:
            i = absent[0]
            raise InputError(f"{p.files[p.list_file[i]]}: image {p.names[i]} has no file under {root / PRESENTED_DIR} "
                             f"({len({p.names[j] for j in absent})} images of {csi} missing)")  # fmt: skip

    def split(names: list[str]) -> ImageSplit:
        images = np.empty((len(names), image_size, image_size, 3), dtype=np.uint8)
        for i, name in enumerate(names):
            images[i] = open_image(files[name], image_size)
        return ImageSplit(images=images, names=np.array(names, dtype=str), stimulus_id=np.full(len(names), np.nan),
                          category=np.array([synset(n) for n in names], dtype=np.int64))  # fmt: skip

    log.info("BOLD5000 %s: %d training, %d test images", subjects, len(train), len(test))
    unpaired = dataset.get("unpaired_images")
    return StimulusSet(train=split(train), test=split(test), source=root,
                       unpaired=load_unpaired_folder(unpaired, image_size) if unpaired else None)  # fmt: skip


# -- subject -------------------------------------------------------------------------------------


def read_subject(files: dict, stimuli: StimulusSet, options_: dict | None = None) -> SubjectRecording:
    """One subject's ROI betas (MinD-Vis' column order) with each trial's split and image row."""
    opts = options({"options": options_ or {}})
    lists, first = Path(files["lists"]), Path(files["subject"])
    if opts["release"] == 1:  # ROIs/CSIk/mat/CSIk_ROIs_TR<tr>.mat + ROIs/stim_lists/CSI0k_stim_lists.txt
        csi = subject_name(first.name.split("_")[0])
        shown = read_stim_list(lists)
        parts = load_roi_mat(first, len(shown.names), lists)
    else:
        csi, betas = lists.name, first.parent
        shown = read_presentations(lists)
        found = roi_files(betas, csi, opts["beta_type"])
        if not found:
            raise InputError(f"{first}: not found, nor any other {csi}_GLMbetas-{opts['beta_type']}_allses_"
                             f"{{LH,RH}}{{{','.join(AREAS)}}}.npy in {betas}")  # fmt: skip
        problem = missing_hemisphere(found, betas, csi, opts["beta_type"])
        if problem:
            raise InputError(problem)
        parts = {label: load_betas(path, len(shown.names), lists) for label, path in found.items()}
    labels = list(parts)  # LABELS order: EarlyVis, LOC, OPA, PPA, RSC, each LH then RH
    width = np.cumsum([0] + [parts[lab].shape[1] for lab in labels])
    n_voxels = int(width[-1])
    atomic = {lab: np.zeros(n_voxels, dtype=bool) for lab in labels}
    xyz = np.full((n_voxels, 3), np.nan)
    for lab, a, b in zip(labels, width[:-1], width[1:]):
        atomic[lab][a:b] = True
        xyz[a:b, 0], xyz[a:b, 1] = HEMIS.index(lab[:2]), np.arange(b - a)
    rois = {name: np.logical_or.reduce([atomic[p] for p in ps]) for name, ps in roi_definitions(labels).items()}

    rows = {TEST: {n: i for i, n in enumerate(np.asarray(stimuli.test.names).tolist())},
            TRAIN: {n: i for i, n in enumerate(np.asarray(stimuli.train.names).tolist())}}  # fmt: skip
    repeated = set(read_repeated(Path(files["repeated"])))
    datatype = np.zeros(len(shown.names), dtype=np.int64)
    index = np.full(len(shown.names), -1, dtype=np.int64)
    for i, name in enumerate(shown.names):
        for split in (TEST, TRAIN):
            if name in rows[split]:
                datatype[i], index[i] = split, rows[split][name]
                break
    lost = np.flatnonzero(datatype == 0)  # a repeated image outside the shared test set, or an error
    strange = [i for i in lost if shown.names[i] not in repeated]
    if strange:
        i = strange[0]
        raise InputError(f"{shown.files[shown.list_file[i]]}: image {shown.names[i]} is in neither the training nor "
                         f"the test images of {stimuli.source} ({len(strange)} trials); were the images prepared "
                         f"for other subjects than {csi}?")  # fmt: skip
    keep = datatype > 0
    fmri = np.concatenate([parts[lab] for lab in labels], axis=1)[keep]
    run = (shown.session if opts["run_unit"] == "session" else shown.run)[keep]
    return SubjectRecording(
        fmri=fmri, datatype=datatype[keep], run=run, image_index=index[keep], voxel_xyz=xyz, rois=rois,
        source=first,
        attrs={"format": "bold5000", "subject": csi, "release": opts["release"], "roi_files": labels,
               **({"tr": opts["tr"]} if opts["release"] == 1 else {"beta_type": opts["beta_type"]}),
               "run_unit": opts["run_unit"] if opts["release"] == 2 else "none", "n_trials": len(shown.names), "n_sessions": int(shown.session.max()),
               "n_runs": int(shown.run.max()), "rep_marked": shown.rep_marked, "dropped_trials": len(lost),
               "n_train": int((datatype == TRAIN).sum()), "n_test_trials": int((datatype == TEST).sum())},
    )  # fmt: skip


READER = Reader(
    name="bold5000",
    description="BOLD5000 release 2.0 GLMsingle ROI betas (or release 1 ROI .mat files) + presentation lists + "
                "Presented_Stimuli",
    rois=LABELS,
    image_inputs=image_inputs,
    subject_inputs=subject_inputs,
    read_stimuli=read_stimuli,
    read_subject=read_subject,
    check=check,
    file_rois=file_rois,
    stimuli_need_subjects=True,
    published_dataset="BOLD5000",
)
