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
or a list of ROI file stems; ``train_trials`` [single] or ``average`` (Brain-Diffuser), which needs
rule ``mask_roi`` to pass options to ``read_subject`` and is refused until it does.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io
from PIL import Image

from ...errors import InputError
from .base import TEST, TRAIN, ImageSplit, Reader, StimulusSet, SubjectRecording
from .images import load_unpaired_folder, square_resize

log = logging.getLogger(__name__)

DESIGN = "nsddata/experiments/nsd/nsd_expdesign.mat"
BRICK = "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
DEFAULTS = {"beta_version": "betas_fithrf_GLMdenoise_RR", "sessions": "all", "betas_format": "auto",
            "atlases": "auto", "train_trials": "single"}  # fmt: skip
FORMATS = {"auto": (".nii.gz", ".hdf5", ".nii"), "nifti": (".nii.gz", ".nii"), "hdf5": (".hdf5",)}
#: Primary atlases (their names are also available bare) and their label names, used when a
#: ``.mgz.ctab`` is missing (datasets.md §2.5); a ctab on disk always wins.
PRIMARY: dict[str, tuple[str, ...]] = {
    "nsdgeneral": ("nsdgeneral",),
    "prf-visualrois": ("V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"),
    "prf-eccrois": ("ecc0pt5", "ecc1", "ecc2", "ecc4", "ecc4+"),
    "streams": ("early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal"),
    "floc-faces": ("OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"),
    "floc-places": ("OPA", "PPA", "RSC"),
    "floc-bodies": ("EBA", "FBA-1", "FBA-2", "mTL-bodies"),
    "floc-words": ("OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"),
}
_SESSION_FILE = re.compile(r"betas_session(\d+)(\.nii\.gz|\.nii|\.hdf5)$")
_CHUNK_BYTES = 64 << 20


# -- names and options ---------------------------------------------------------------------------


def sanitize(name: str) -> str:
    """An NSD label or atlas name as a config ROI name: ``FFA-1`` → ``FFA1``, ``ecc4+`` → ``ecc4plus``."""
    return re.sub(r"[^A-Za-z0-9]", "", name.replace("+", "plus"))


def _unions(names: list[str]) -> dict[str, list[str]]:
    """``V1v``/``V1d`` → ``V1``; ``hV4`` → ``V4``; only where the union's name is not a label itself."""
    groups: dict[str, list[str]] = {}
    for n in names:
        m = re.fullmatch(r"(.*\d)[vd]", n)
        if m:
            groups.setdefault(m.group(1), []).append(n)
    if "hV4" in names:
        groups.setdefault("V4", []).append("hV4")
    return {u: parts for u, parts in groups.items() if u not in names}


#: The format's atomic ROI roster (bare names of the primary atlases' labels).
ROIS = tuple(sanitize(n) for names in PRIMARY.values() for n in names)


def _bare_names() -> dict[str, str]:
    """Bare name (labels, their unions, atlas keys) → primary atlas."""
    out: dict[str, str] = {}
    for atlas, names in PRIMARY.items():
        clean = [sanitize(n) for n in names]
        for n in [*clean, *_unions(clean), sanitize(atlas)]:
            out.setdefault(n, atlas)
    return out


def subject_number(label: str) -> int:
    m = re.fullmatch(r"(?:subj)?0*(\d+)", str(label))
    if not m or int(m.group(1)) < 1:
        raise InputError(f"NSD subject {label!r} is not a subject number (1, 01 or subj01)")
    return int(m.group(1))


def _session_list(value, where: str) -> str | tuple[int, ...]:
    if value == "all":
        return "all"
    items = value if isinstance(value, list) else [value]
    out: list[int] = []
    for item in items:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-|–|\.\.)\s*(\d+)\s*", item) if isinstance(item, str) else None
        if m and 1 <= int(m.group(1)) <= int(m.group(2)):
            out += range(int(m.group(1)), int(m.group(2)) + 1)
        elif isinstance(item, int) and not isinstance(item, bool) and item >= 1 and isinstance(value, list):
            out.append(item)
        else:
            raise InputError(f"config error at {where}.sessions: {item!r} is not a session; expected 'all', "
                             f"a range like '1-37', or a list of session numbers and ranges")  # fmt: skip
    if not out or len(set(out)) != len(out):
        raise InputError(f"config error at {where}.sessions: {value!r} lists no session or one twice")
    return tuple(sorted(out))


def parse_options(options: dict | None, where: str = "options") -> dict:
    """The ``options:`` of an nsd dataset with defaults filled in; InputError (one line) per problem."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise InputError(f"config error at {where}: unknown key(s) {unknown} for format nsd "
                         f"(allowed: {', '.join(DEFAULTS)})")  # fmt: skip
    opts = {**DEFAULTS, **options}
    version = opts["beta_version"]
    if not isinstance(version, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", version):
        raise InputError(f"config error at {where}.beta_version: {version!r} is not a betas folder name "
                         f"(e.g. betas_fithrf_GLMdenoise_RR, betas_fithrf, betas_assumehrf)")  # fmt: skip
    opts["sessions"] = _session_list(opts["sessions"], where)
    if opts["betas_format"] not in FORMATS:
        raise InputError(f"config error at {where}.betas_format: {opts['betas_format']!r} is not one of "
                         f"{', '.join(FORMATS)}")  # fmt: skip
    atlases = opts["atlases"]
    if atlases != "auto":
        ok = isinstance(atlases, list) and atlases and all(
            isinstance(a, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", a) for a in atlases)
        if not ok:
            raise InputError(f"config error at {where}.atlases: {atlases!r} is not 'auto' or a list of ROI "
                             f"file stems (e.g. [nsdgeneral, prf-visualrois])")  # fmt: skip
        opts["atlases"] = tuple(dict.fromkeys(atlases))
    if opts["train_trials"] not in ("single", "average"):
        raise InputError(f"config error at {where}.train_trials: {opts['train_trials']!r} is not single or average")
    return opts


# -- paths ---------------------------------------------------------------------------------------


def _betas_dir(root, n: int, version: str) -> Path:
    return Path(root) / "nsddata_betas/ppdata" / f"subj{n:02d}" / "func1pt8mm" / version


def _roi_dir(root, n: int) -> Path:
    return Path(root) / "nsddata/ppdata" / f"subj{n:02d}" / "func1pt8mm/roi"


def _ctab(root, n: int, atlas: str) -> Path | None:
    for sub in (f"subj{n:02d}", "fsaverage"):
        p = Path(root) / "nsddata/freesurfer" / sub / "label" / f"{atlas}.mgz.ctab"
        if p.is_file():
            return p
    return None


def _atlases_on_disk(roi_dir: Path) -> list[str]:
    if not roi_dir.is_dir():
        return []
    stems = [p.name[: -len(".nii.gz")] for p in roi_dir.glob("*.nii.gz")]
    return sorted(s for s in stems if not s.startswith(("lh.", "rh.")))


def session_files(root, n: int, opts: dict) -> dict[int, Path]:
    """{session: betas file} of subject ``n``; an absent listed session gets its expected path."""
    folder = _betas_dir(root, n, opts["beta_version"])
    exts = FORMATS[opts["betas_format"]]
    if opts["sessions"] == "all":
        found: dict[int, list[Path]] = {}
        for p in sorted(folder.glob("betas_session*")) if folder.is_dir() else []:
            m = _SESSION_FILE.fullmatch(p.name)
            if m and m.group(2) in exts:
                found.setdefault(int(m.group(1)), []).append(p)
        return {s: min(ps, key=lambda p: exts.index(_SESSION_FILE.fullmatch(p.name).group(2)))
                for s, ps in sorted(found.items())}  # fmt: skip
    out = {}
    for s in opts["sessions"]:
        paths = [folder / f"betas_session{s:02d}{ext}" for ext in exts]
        out[s] = next((p for p in paths if p.is_file()), paths[0])
    return out


def _atlas_selection(dataset: dict, root, n: int, opts: dict) -> list[str]:
    """The atlases whose volumes are read (option ``atlases``, or ``auto`` from the ROI names)."""
    if opts["atlases"] != "auto":
        return list(opts["atlases"])
    on_disk = _atlases_on_disk(_roi_dir(root, n))
    bare = _bare_names()
    keys = {sanitize(a): a for a in [*PRIMARY, *on_disk]}
    chosen: list[str] = []
    unresolved = False
    for roi in dataset.get("rois", []):
        prefix = [k for k in keys if roi.startswith(k)]
        if roi in bare:
            chosen.append(bare[roi])
        elif prefix:
            chosen.append(keys[max(prefix, key=len)])
        else:
            unresolved = True
    if unresolved or not chosen:
        chosen += [a for a in PRIMARY if a in on_disk] or list(PRIMARY)[:1]
    return list(dict.fromkeys(chosen))


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
    for subject in dataset.get("subjects", []):
        files += [str(p) for p in session_files(root, subject_number(subject), opts).values()]
    return files


def check(dataset: dict, where: str) -> None:
    opts = parse_options(dataset.get("options"), f"{where}.options")
    if opts["train_trials"] == "average":
        raise InputError(f"config error at {where}.options.train_trials: 'average' is not available yet (rule "
                         f"mask_roi does not pass options to the nsd reader); use single")  # fmt: skip
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


# -- design --------------------------------------------------------------------------------------


@dataclass
class Design:
    """``nsd_expdesign.mat``: 1-based values as stored, validated."""

    path: Path
    masterordering: np.ndarray  # (n_trials,) int64, 1-based columns of subjectim
    subjectim: np.ndarray  # (n_subjects, n_images) int64, 1-based 73k ids
    shared: np.ndarray  # sorted 0-based nsdIds of the shared images
    session_counts: np.ndarray | None  # stimulus trials per design session (stimpattern), if usable

    def images(self, n: int, trials: np.ndarray) -> np.ndarray:
        """0-based nsdIds of subject ``n``'s global (0-based) trials."""
        if n > len(self.subjectim):
            raise InputError(f"{self.path}: subjectim has {len(self.subjectim)} subjects, no subject {n}")
        return self.subjectim[n - 1, self.masterordering[trials] - 1] - 1


def _mat_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        try:
            return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
        except NotImplementedError:  # MATLAB v7.3 = HDF5, arrays transposed
            with h5py.File(path, "r") as f:
                return {k: np.asarray(f[k]).T for k in f if isinstance(f[k], h5py.Dataset)}
    except Exception as exc:  # scipy and h5py raise many types for corrupt files
        raise InputError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc


def _int_array(arrays: dict, key: str, path: Path, ndim: int) -> np.ndarray:
    if key not in arrays:
        raise InputError(f"{path}: key {key!r} missing (keys: {', '.join(sorted(arrays))})")
    x = np.asarray(arrays[key])
    if x.dtype.kind not in "iuf" or (x.dtype.kind == "f" and not (np.isfinite(x).all() and (x == np.round(x)).all())):
        raise InputError(f"{path}: {key} must hold integers, found dtype {x.dtype}")
    x = x.astype(np.int64)
    return x.ravel() if ndim == 1 else x


def load_design(path) -> Design:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"NSD design file not found: {path}")
    arrays = _mat_arrays(path)
    order = _int_array(arrays, "masterordering", path, 1)
    subjectim = _int_array(arrays, "subjectim", path, 2)
    if subjectim.ndim != 2 or (subjectim < 1).any():
        raise InputError(f"{path}: subjectim has shape {subjectim.shape}, expected (n_subjects, n_images) of 1-based ids")
    if len(order) == 0 or order.min() < 1 or order.max() > subjectim.shape[1]:
        raise InputError(f"{path}: masterordering spans {order.min(initial=0)}..{order.max(initial=0)}, "
                         f"expected 1..{subjectim.shape[1]} (columns of subjectim)")  # fmt: skip
    if "sharedix" in arrays:
        shared = np.unique(_int_array(arrays, "sharedix", path, 1) - 1)
    else:  # the shared images are the ones every subject has
        shared = np.array(sorted(set.intersection(*(set(r.tolist()) for r in subjectim))), np.int64) - 1
    counts = None
    pattern = arrays.get("stimpattern")
    if pattern is not None and np.ndim(pattern) == 3:
        c = (np.asarray(pattern) > 0).reshape(len(pattern), -1).sum(1)
        counts = c if c.sum() == len(order) else None
    return Design(path, order, subjectim, shared, counts)


def session_layout(design: Design, counts: dict[int, int], files: dict[int, Path]) -> dict[int, tuple[int, int]]:
    """{session: (first global trial, n_trials)}; InputError where a file's trial count disagrees."""
    n_total = len(design.masterordering)
    if design.session_counts is not None:
        starts = np.r_[0, np.cumsum(design.session_counts)]
        out = {}
        for s, n in counts.items():
            if s > len(design.session_counts):
                raise InputError(f"{files[s]}: session {s} is beyond the design ({design.path} stimpattern has "
                                 f"{len(design.session_counts)} sessions)")  # fmt: skip
            expected = int(design.session_counts[s - 1])
            if n != expected:
                raise InputError(f"{files[s]}: {n} trials, expected {expected} (session {s} of {design.path} "
                                 f"stimpattern)")  # fmt: skip
            out[s] = (int(starts[s - 1]), n)
        return out
    per = Counter(counts.values()).most_common(1)[0][0] if counts else 0
    for s, n in counts.items():
        if n != per or n_total % n:
            raise InputError(f"{files[s]}: {n} trials, expected {per if n != per else 'a divisor of ' + str(n_total)}"
                             f" (every session has the same count; {design.path} masterordering has {n_total} "
                             f"trials)")  # fmt: skip
        if s * n > n_total:
            raise InputError(f"{files[s]}: session {s} is beyond the design ({design.path} masterordering has "
                             f"{n_total} trials = {n_total // n} sessions of {n})")  # fmt: skip
    return {s: ((s - 1) * n, n) for s, n in counts.items()}


# -- betas files ---------------------------------------------------------------------------------


@dataclass
class BetasHeader:
    path: Path
    n_trials: int
    grid: tuple[int, int, int]  # X, Y, Z
    kind: str  # nifti | hdf5
    offset: int  # bytes before the data (nifti)
    dtype: np.dtype


def betas_header(path: Path, session: int | None = None) -> BetasHeader:
    """Shape and layout of one betas file, read from its header only."""
    if not path.is_file():
        where = f" (session {session})" if session is not None else ""
        raise InputError(f"betas file not found: {path}{where}; expected the betas_sessionNN files of the "
                         f"chosen sessions in {path.parent}")  # fmt: skip
    try:
        if path.name.endswith(".hdf5"):
            with h5py.File(path, "r") as f:
                if "betas" not in f:
                    raise InputError(f"{path}: dataset 'betas' missing (keys: {', '.join(f)})")
                shape, dtype = f["betas"].shape, f["betas"].dtype
            kind, grid, n, offset = "hdf5", tuple(shape[:0:-1]), shape[0] if shape else 0, 0
        else:
            proxy = nib.load(str(path)).dataobj  # the image's header copy has its offset reset: ask the proxy
            shape, dtype = proxy.shape, proxy.dtype
            if (proxy.slope, proxy.inter) != (1.0, 0.0):
                raise InputError(f"{path}: scl_slope {proxy.slope} / scl_inter {proxy.inter} set; expected raw "
                                 f"int16 betas (% signal change × 300)")  # fmt: skip
            kind, grid, n, offset = "nifti", tuple(shape[:3]), shape[3] if len(shape) == 4 else 0, int(proxy.offset)
    except InputError:
        raise
    except Exception as exc:  # nibabel / h5py raise many types for corrupt files
        raise InputError(f"{path}: not a readable betas file ({type(exc).__name__}: {exc})") from exc
    if len(shape) != 4 or dtype.kind != "i" or dtype.itemsize != 2:
        layout = "(trials, Z, Y, X)" if kind == "hdf5" else "(X, Y, Z, trials)"
        raise InputError(f"{path}: betas of shape {tuple(shape)} dtype {dtype}, expected int16 {layout}")
    return BetasHeader(path, int(n), tuple(int(g) for g in grid), kind, offset, np.dtype(dtype))


def _read_exact(fh, view: memoryview, path: Path) -> None:
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            raise InputError(f"{path}: file ends early (truncated download?)")
        got += n


def read_betas(header: BetasHeader, ijk: np.ndarray) -> np.ndarray:
    """(n_trials, V) int16 at voxels ``ijk`` (V, 3), streamed: never the whole file in memory."""
    T, (X, Y, Z) = header.n_trials, header.grid
    out = np.empty((T, len(ijk)), np.int16)
    i, j, k = ijk.T
    try:
        if header.kind == "nifti":  # volume after volume, x fastest
            flat = i + X * (j + Y * k)
            nvox = X * Y * Z
            block = max(1, _CHUNK_BYTES // (nvox * header.dtype.itemsize))
            buf = np.empty((block, nvox), header.dtype)
            opener = gzip.open if header.path.name.endswith(".gz") else open
            with opener(header.path, "rb") as fh:
                fh.seek(header.offset)
                for t0 in range(0, T, block):
                    m = min(block, T - t0)
                    _read_exact(fh, memoryview(buf[:m]).cast("B"), header.path)
                    out[t0 : t0 + m] = buf[:m][:, flat]
        else:  # betas (T, Z, Y, X): slabs of z over the voxels' bounding box
            with h5py.File(header.path, "r") as f:
                ds = f["betas"]
                y0, y1, x0, x1 = j.min(), j.max() + 1, i.min(), i.max() + 1
                dz = max(1, _CHUNK_BYTES // (T * (y1 - y0) * (x1 - x0) * 2))
                for z0 in range(int(k.min()), int(k.max()) + 1, dz):
                    sel = (k >= z0) & (k < z0 + dz)
                    if sel.any():
                        slab = ds[:, z0 : z0 + dz, y0:y1, x0:x1]
                        local = ((k[sel] - z0) * (y1 - y0) + (j[sel] - y0)) * (x1 - x0) + (i[sel] - x0)
                        out[:, sel] = slab.reshape(T, -1)[:, local]
    except InputError:
        raise
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise InputError(f"{header.path}: cannot read betas ({type(exc).__name__}: {exc})") from exc
    return out


# -- ROI volumes ---------------------------------------------------------------------------------


def _read_ctab(path: Path) -> dict[int, str]:
    table: dict[int, str] = {}
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split("#")[0].split()
        if not parts:
            continue
        if len(parts) < 2 or not re.fullmatch(r"-?\d+", parts[0]):
            raise InputError(f"{path}: line {line_no} {line!r} is not 'index name'")
        if int(parts[0]) > 0:
            table[int(parts[0])] = parts[1]
    return table


def _label_table(atlas: str, ctab: Path | None, volume: Path) -> dict[int, str]:
    if ctab is not None:
        return _read_ctab(ctab)
    if atlas in PRIMARY:
        return dict(enumerate(PRIMARY[atlas], 1))
    raise InputError(f"{volume}: no label table {atlas}.mgz.ctab in nsddata/freesurfer/subjAA/label or "
                     f"fsaverage/label, and {atlas} is not a built-in NSD atlas ({', '.join(PRIMARY)})")  # fmt: skip


def roi_names(tables: dict[str, dict[int, str]]) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
    """ROI name → [(atlas, label)] it is the union of; and the bare names dropped as ambiguous."""
    qualified: dict[str, list[tuple[str, int]]] = {}
    bare: dict[str, list[tuple[str, int]]] = {}
    bare_from: dict[str, set[str]] = {}
    for atlas, table in tables.items():
        key = sanitize(atlas)
        by_name = {sanitize(v): k for k, v in sorted(table.items()) if sanitize(v)}
        names = {n: [(atlas, k)] for n, k in by_name.items()}
        names.update({u: [(atlas, by_name[p]) for p in parts] for u, parts in _unions(list(by_name)).items()})
        for n, labels in names.items():
            qualified.setdefault(key if n == key else key + n, labels)
            if atlas in PRIMARY:
                bare.setdefault(n, labels)
                bare_from.setdefault(n, set()).add(atlas)
        qualified.setdefault(key, [(atlas, k) for k in table])
    ambiguous = sorted(n for n, atlases in bare_from.items() if len(atlases) > 1)
    out = {n: v for n, v in bare.items() if n not in ambiguous}
    for n, v in qualified.items():
        out.setdefault(n, v)
    return out, ambiguous


def _load_volume(path: Path, grid, available=(), integer: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) volume on the betas grid (int32 labels, or float64) and its 4×4 affine."""
    if not path.is_file():
        raise InputError(f"ROI volume not found: {path} (atlases in {path.parent}: {', '.join(available) or 'none'})")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI volume ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.shape != grid:
        raise InputError(f"{path}: volume of shape {data.shape}, expected the betas grid {grid} (X, Y, Z)")
    if not integer:
        return data.astype(np.float64), np.asarray(img.affine, np.float64)
    if data.dtype.kind == "f" and not (np.isfinite(data).all() and (data == np.round(data)).all()):
        raise InputError(f"{path}: ROI labels must be integers (-1 outside cortex, 0 unlabeled, k > 0 a label)")
    return data.astype(np.int32), np.asarray(img.affine, np.float64)


# -- responses.tsv -------------------------------------------------------------------------------


def check_responses(path: Path, n: int, layout: dict[int, tuple[int, int]], expected: dict[int, np.ndarray]) -> list[int]:
    """``73KID`` per (SESSION, RUN, TRIAL) against the design; ``expected`` = 0-based nsdIds per session.

    Rows are taken in (RUN, TRIAL) order within a session. A session the file does not list at all
    is skipped (behaviour missing is not a disagreement); returns the sessions checked."""
    try:
        df = pd.read_csv(path, sep="\t")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable TSV ({exc})") from exc
    need = ["SESSION", "RUN", "TRIAL", "73KID"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"{path}: column(s) {missing} missing (columns: {', '.join(map(str, df.columns))})")
    if "SUBJECT" in df.columns and len(df) and (df["SUBJECT"] != n).any():
        raise InputError(f"{path}: SUBJECT {df['SUBJECT'].iloc[0]} in a file of subj{n:02d}")
    checked = []
    for s, (_, count) in layout.items():
        rows = df[df["SESSION"] == s].sort_values(["RUN", "TRIAL"], kind="stable")
        if not len(rows):
            continue
        checked.append(s)
        if rows.duplicated(["RUN", "TRIAL"]).any():
            dup = rows[rows.duplicated(["RUN", "TRIAL"])]
            raise InputError(f"{path}: session {s} lists RUN {dup['RUN'].iloc[0]} TRIAL {dup['TRIAL'].iloc[0]} twice")
        if len(rows) != count:
            raise InputError(f"{path}: {len(rows)} trials in session {s}, expected {count} as in the design "
                             f"and betas_session{s:02d}")  # fmt: skip
        got = rows["73KID"].to_numpy()
        bad = np.flatnonzero(got != expected[s] + 1)
        if len(bad):
            run, trial, got_id = (rows[c].to_numpy()[bad[0]] for c in ("RUN", "TRIAL", "73KID"))
            raise InputError(f"{path}: SESSION {s} RUN {run} TRIAL {trial} (trial {bad[0] + 1} of the session) has "
                             f"73KID {got_id}, the design gives {expected[s][bad[0]] + 1} ({len(bad)} trials of "
                             f"the session disagree)")  # fmt: skip
    return checked


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
    return StimulusSet(train=_split(images[: len(train_ids)], train_ids),
                       test=_split(images[len(train_ids) :], test_ids), unpaired=unpaired, source=Path(root))  # fmt: skip


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


def _average_train(fmri, datatype, image_index, run, trial):
    """Training rows replaced by one row per image (mean of its trials, as stored); run 0."""
    train = datatype == TRAIN
    ids, inverse, counts = np.unique(image_index[train], return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), fmri.shape[1]), np.float64)
    np.add.at(sums, inverse, fmri[train])
    avg = (sums / counts[:, None]).astype(np.float32)
    keep = ~train
    return (np.concatenate([avg, fmri[keep]]), np.r_[np.full(len(ids), TRAIN), datatype[keep]],
            np.r_[ids, image_index[keep]], np.r_[np.zeros(len(ids), np.int64), run[keep]],
            np.r_[np.full(len(ids), -1), trial[keep]])  # fmt: skip


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
    if train_trials == "average":
        fmri, datatype, image_index, run, trial = _average_train(fmri, datatype, image_index, run, trial)
    attrs = {
        "format": "nsd", "subject": subj, "beta_version": folder.name, "sessions": list(layout),
        "betas_files": [str(p) for p in sessions.values()], "design": str(design.path),
        "responses": str(files.get("responses") or ""), "responses_sessions_checked": checked, **roi_info,
        "dropped_trials": dropped, "train_trials": train_trials, "trial": trial, "voxel_ijk": ijk, "grid": list(grid),
        "trials_per_session_from": "stimpattern" if design.session_counts is not None else "betas files",
    }  # fmt: skip
    return SubjectRecording(fmri=fmri, datatype=datatype, run=run, image_index=image_index, voxel_xyz=xyz,
                            rois=rois, source=folder, noise_ceiling=noise_ceiling, attrs=attrs)  # fmt: skip


def read_subject(files: dict, stimuli: StimulusSet) -> SubjectRecording:
    return read_nsd_subject(files, stimuli)


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
)
