"""Files of the NSD release, read and checked: the design (``nsd_expdesign.mat``), the betas
(``.nii.gz`` streamed volume by volume, ``.hdf5`` in slabs), the ROI volumes and their ``.mgz.ctab``
label tables, and ``responses.tsv``. :mod:`.nsd` (the reader) builds on these; the rules of the
format are in its docstring.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io

from ...errors import InputError

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
_CHUNK_BYTES = 64 << 20


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
