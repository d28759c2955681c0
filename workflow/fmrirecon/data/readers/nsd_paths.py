"""The NSD release's names: file paths under the dataset folder, the format's options
(``options:`` of a dataset entry) and config-safe ROI names. :mod:`.nsd` (the reader) builds on
these; the rules of the format are in its docstring.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import InputError
from .nsd_files import PRIMARY, _unions, sanitize

DESIGN = "nsddata/experiments/nsd/nsd_expdesign.mat"
BRICK = "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
DEFAULTS = {"beta_version": "betas_fithrf_GLMdenoise_RR", "sessions": "all", "betas_format": "auto",
            "atlases": "auto", "train_trials": "single", "coco_annotations": ""}  # fmt: skip
FORMATS = {"auto": (".nii.gz", ".hdf5", ".nii"), "nifti": (".nii.gz", ".nii"), "hdf5": (".hdf5",)}
_SESSION_FILE = re.compile(r"betas_session(\d+)(\.nii\.gz|\.nii|\.hdf5)$")


# -- names and options ---------------------------------------------------------------------------


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
    coco = opts["coco_annotations"]
    if not isinstance(coco, str) or (coco and ".." in Path(coco).parts):
        raise InputError(f"config error at {where}.coco_annotations: {coco!r} is not a folder path (relative to the "
                         f"dataset folder or absolute, without '..')")  # fmt: skip
    if opts["train_trials"] not in ("single", "average"):
        raise InputError(f"config error at {where}.train_trials: {opts['train_trials']!r} is not single or average")
    return opts


# -- paths ---------------------------------------------------------------------------------------


def coco_folder(root, opts: dict) -> Path | None:
    """The folder of COCO-2017 ``captions_*.json`` / ``instances_*.json`` (option
    ``coco_annotations``, relative to the dataset folder unless absolute), or None."""
    if not opts["coco_annotations"]:
        return None
    folder = Path(opts["coco_annotations"])
    return folder if folder.is_absolute() else Path(root) / folder


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
