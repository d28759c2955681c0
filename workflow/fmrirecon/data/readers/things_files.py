"""Pieces of the THINGS-fMRI reader that read one kind of file: the pandas HDF5 ``ResponseData``
store (through h5py, never through pandas), the stimulus and voxel metadata CSVs, and the optional
concepts TSV. :mod:`.things_fmri` (the reader) builds on these; the rules of the format are in its
docstring.

**The ResponseData store.** ``pd.read_hdf`` would unpickle the file's column index: the frame's
columns are ``voxel_id`` then the trial numbers ``0 .. n-1``, a mix of a string and integers, which
pandas' "fixed" format stores as a pickled object array (``<key>/axis0``, an HDF5 variable-length
byte array). This module never reads ``axis0``. A fixed-format frame keeps its values in blocks,
one per dtype (``block{i}_values``, rows × the block's columns, stored transposed as pandas
writes them) with the block's column labels beside them (``block{i}_items``): plain strings
(``voxel_id``) or integers are stored as HDF5 arrays, but a subset of an object column index
(the trial numbers) is again a pickle. Those item pickles are parsed by
:func:`fmrirecon.data.safe_pickle.loads`, which executes nothing and admits only a numpy array of
plain numbers and strings; anything else fails with one line naming the file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ...errors import InputError
from ..safe_pickle import loads as safe_loads

#: The key ``pd.read_hdf`` finds in the published files.
RESPONSE_KEY = "ResponseData"
#: Columns the stimulus table must have (``subject_id`` and ``trial_id`` are optional).
STIMULUS_COLUMNS = ("trial_type", "session", "run", "stimulus", "concept")
TRIAL_TYPES = ("train", "test", "catch")
VOXEL_COLUMNS = ("voxel_id", "voxel_x", "voxel_y", "voxel_z")
#: Values read at once (rows × the block's columns; 128 MiB of float64).
CHUNK_VALUES = 16 << 20


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _attr(node, key: str, default=None):
    value = node.attrs.get(key, default)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return _text(value) if isinstance(value, (bytes, np.bytes_)) else value


# -- ResponseData.h5 -----------------------------------------------------------------------------


@dataclass
class ResponseStore:
    """Where a ResponseData store keeps its columns: ``voxel_id`` (V,) int64, and per block holding
    trials ``(dataset name, [(column in the block, trial number)])``."""

    path: Path
    group: str
    n_rows: int
    voxel_id: np.ndarray
    trial_columns: list[tuple[str, list[tuple[int, int]]]]
    n_trials: int


def _items(path: Path, node) -> list:
    """A block's column labels, read without pandas (a pickled label array through safe_loads)."""
    name = node.name
    vlen = h5py.check_vlen_dtype(node.dtype)
    if vlen is not None:  # a pytables ObjectAtom VLArray: one row holding the pickle
        if vlen != np.uint8 or node.shape != (1,):
            raise InputError(f"{path}: {name} is a variable-length array of {vlen} with shape {node.shape}, "
                             "expected pandas' pickled column labels (one row of bytes)")  # fmt: skip
        value = safe_loads(bytes(np.asarray(node[0], dtype=np.uint8)), f"{path}:{name}")
        if not isinstance(value, np.ndarray) or value.ndim != 1:
            raise InputError(f"{path}: {name} holds {type(value).__name__}, expected a 1-D array of column labels")
        return value.tolist()
    if node.ndim != 1 or node.dtype.kind not in "SUiu":
        raise InputError(f"{path}: {name} has shape {node.shape} dtype {node.dtype}, expected 1-D column labels")
    return [_text(v) if node.dtype.kind in "SU" else int(v) for v in node[()]]


def _trial_label(label) -> int | None:
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return int(label)
    if isinstance(label, str) and label.isdigit():
        return int(label)
    return None


def open_response_store(path, n_trials: int, table: Path) -> ResponseStore:
    """Check the store's layout (one line on any mismatch) and locate its columns; reads only
    ``voxel_id`` and the block labels. ``n_trials``: rows of the stimulus table ``table``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ResponseData file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        frames = [k for k in f if isinstance(f[k], h5py.Group) and _attr(f[k], "pandas_type") is not None]
        key = RESPONSE_KEY if RESPONSE_KEY in frames else (frames[0] if len(frames) == 1 else None)
        if key is None:
            raise InputError(f"{path}: no pandas store {RESPONSE_KEY!r} (groups: {sorted(f)}); expected the "
                             "THINGS-fMRI betas_csv ResponseData file written by DataFrame.to_hdf")  # fmt: skip
        g = f[key]
        kind, ndim, nblocks = _attr(g, "pandas_type"), _attr(g, "ndim"), _attr(g, "nblocks")
        if kind != "frame" or ndim != 2 or not isinstance(nblocks, (int, np.integer)) or nblocks < 1:
            raise InputError(f"{path}: {key} is a pandas {kind!r} store (ndim {ndim}, nblocks {nblocks}), expected "
                             "a 2-D DataFrame in the fixed format (format='fixed', pandas_type 'frame')")  # fmt: skip
        n_rows, voxel_id, trials, seen = None, None, [], set()
        for i in range(int(nblocks)):
            vname, iname = f"block{i}_values", f"block{i}_items"
            if vname not in g or iname not in g:
                raise InputError(f"{path}: {key} has nblocks {nblocks} but no {key}/{vname} or {key}/{iname}")
            values = g[vname]
            if values.ndim != 2 or values.dtype.kind not in "fiu":
                raise InputError(f"{path}: {key}/{vname} has shape {values.shape} dtype {values.dtype}, expected "
                                 "numbers (voxels, columns)")  # fmt: skip
            items = _items(path, g[iname])
            if values.shape[1] != len(items):
                raise InputError(f"{path}: {key}/{vname} has {values.shape[1]} columns but {key}/{iname} names "
                                 f"{len(items)}")  # fmt: skip
            if n_rows is None:
                n_rows = values.shape[0]
            elif values.shape[0] != n_rows:
                raise InputError(f"{path}: {key}/{vname} has {values.shape[0]} rows, {key}/block0_values {n_rows}")
            columns = []
            for col, label in enumerate(items):
                if label == "voxel_id":
                    x = values[:, col]
                    if values.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
                        raise InputError(f"{path}: column voxel_id of {key}/{vname} is not integer")
                    voxel_id = x.astype(np.int64)
                    continue
                trial = _trial_label(label)
                if trial is None:
                    raise InputError(f"{path}: unexpected column {label!r} in {key}/{iname}; expected voxel_id and "
                                     "the trial numbers 0..n-1")  # fmt: skip
                if trial in seen:
                    raise InputError(f"{path}: trial column {trial} appears twice")
                seen.add(trial)
                columns.append((col, trial))
            if columns:
                if values.dtype.kind != "f":
                    raise InputError(f"{path}: trial columns in {key}/{vname} have dtype {values.dtype}, expected float")
                trials.append((f"{key}/{vname}", columns))
        if voxel_id is None:
            raise InputError(f"{path}: no voxel_id column in {key} (block items: voxel_id and trial numbers expected)")
    if seen != set(range(n_trials)):
        extra = sorted(seen - set(range(n_trials)))
        raise InputError(f"{path}: {len(seen)} trial columns (numbers {min(seen, default=None)}..{max(seen, default=None)}"
                         f"{', e.g. ' + str(extra[0]) if extra else ''}) but {table} has {n_trials} rows; row i of "
                         "the stimulus table is trial column i")  # fmt: skip
    return ResponseStore(path, key, int(n_rows), voxel_id, trials, n_trials)


def read_responses(store: ResponseStore, rows: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """(len(trials), len(rows)) float32: trial numbers ``trials`` (in that order) of the voxel rows
    ``rows`` (sorted), read in slabs of rows so that the whole store is never in memory."""
    rows = np.asarray(rows, np.int64)
    out = np.empty((len(trials), len(rows)), np.float32)
    where = {int(t): i for i, t in enumerate(np.asarray(trials).tolist())}
    with h5py.File(store.path, "r") as f:
        for name, columns in store.trial_columns:
            keep = [(c, where[t]) for c, t in columns if t in where]
            if not keep:
                continue
            cols = np.array([c for c, _ in keep])
            dest = np.array([d for _, d in keep])
            ds = f[name]
            step = max(1, CHUNK_VALUES // max(1, ds.shape[1]))
            for start in range(int(rows[0]), int(rows[-1]) + 1, step) if len(rows) else ():
                a, b = np.searchsorted(rows, [start, start + step])
                if a == b:
                    continue
                slab = ds[start : int(rows[b - 1]) + 1]
                out[dest[:, None], np.arange(a, b)[None, :]] = slab[rows[a:b] - start][:, cols].T
    return out


# -- CSV tables ----------------------------------------------------------------------------------


def read_header(path) -> list[str]:
    """The column names of a CSV file (the first line only)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV file: {exc}") from None
    if not header:
        raise InputError(f"{path}: empty file, expected a CSV header")
    return [h.strip() for h in header]


def _read_csv(path: Path, columns: list[str], dtypes: dict | None = None) -> pd.DataFrame:
    try:
        return pd.read_csv(path, usecols=columns, dtype=dtypes, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read columns {columns}: {' '.join(str(exc).split())[:200]}") from None


@dataclass
class StimulusTable:
    """``sub-XX_StimulusMetadata.csv``: per trial (row i = trial column i) its type, session, run,
    stimulus file name and concept."""

    path: Path
    trial_type: np.ndarray
    session: np.ndarray
    run: np.ndarray
    stimulus: np.ndarray
    concept: np.ndarray

    def __len__(self) -> int:
        return len(self.trial_type)


def read_stimulus_table(path) -> StimulusTable:
    path = Path(path)
    header = read_header(path)
    missing = [c for c in STIMULUS_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: header lacks {missing} (expected {', '.join(STIMULUS_COLUMNS)}, as in "
                         "sub-XX_StimulusMetadata.csv)")  # fmt: skip
    df = _read_csv(path, list(STIMULUS_COLUMNS), {"trial_type": str, "stimulus": str, "concept": str})
    if not len(df):
        raise InputError(f"{path}: no trials")
    kinds = df["trial_type"].fillna("").str.strip().to_numpy(dtype=str)
    bad = np.flatnonzero(~np.isin(kinds, TRIAL_TYPES))
    if len(bad):
        raise InputError(f"{path}:{bad[0] + 2}: trial_type {str(kinds[bad[0]])!r}, expected one of {list(TRIAL_TYPES)}")
    numbers = {}
    for col in ("session", "run"):
        x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(x) | (x != np.round(x)))
        if len(bad):
            raise InputError(f"{path}:{bad[0] + 2}: {col} {str(df[col].iloc[bad[0]])!r} is not an integer")
        numbers[col] = x.astype(np.int64)
    text = {c: df[c].fillna("").str.strip().to_numpy(dtype=str) for c in ("stimulus", "concept")}
    keep = kinds != "catch"
    for col, values in text.items():
        empty = np.flatnonzero(keep & (values == ""))
        if len(empty):
            raise InputError(f"{path}:{empty[0] + 2}: empty {col} in a {kinds[empty[0]]} trial")
    return StimulusTable(path, kinds, numbers["session"], numbers["run"], text["stimulus"], text["concept"])


@dataclass
class VoxelTable:
    """``sub-XX_VoxelMetadata.csv``: ``voxel_id``, coordinates, the 0/1 ROI columns asked for and
    ``nc_testset`` when present."""

    path: Path
    voxel_id: np.ndarray
    xyz: np.ndarray
    rois: dict[str, np.ndarray]
    nc_testset: np.ndarray | None


def read_voxel_table(path, roi_columns: tuple[str, ...]) -> VoxelTable:
    """Read the columns needed; every column of ``roi_columns`` must be there and 0/1."""
    path = Path(path)
    header = read_header(path)
    missing = [c for c in VOXEL_COLUMNS if c not in header]
    absent = [c for c in roi_columns if c not in header]
    if missing or absent:
        what = f"columns {missing}" if missing else f"ROI column(s) {absent}"
        raise InputError(f"{path}: no {what} (the published VoxelMetadata has voxel_id, voxel_x/y/z and the 0/1 "
                         "ROI columns V1 ... IT)")  # fmt: skip
    nc = ["nc_testset"] if "nc_testset" in header else []
    df = _read_csv(path, [*VOXEL_COLUMNS, *roi_columns, *nc])
    values = {}
    for col in df.columns:
        x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(x))
        if col != "nc_testset" and len(bad):
            raise InputError(f"{path}:{bad[0] + 2}: {col} {str(df[col].iloc[bad[0]])!r} is not a number")
        values[col] = x
    rois = {}
    for col in roi_columns:
        bad = np.flatnonzero(~np.isin(values[col], (0.0, 1.0)))
        if len(bad):
            raise InputError(f"{path}:{bad[0] + 2}: ROI column {col!r} is {float(values[col][bad[0]])!r}, expected 0 or 1")
        rois[col] = values[col] == 1.0
    ids = values["voxel_id"]
    if (ids != np.round(ids)).any():
        raise InputError(f"{path}: voxel_id must be integers")
    xyz = np.stack([values[c] for c in VOXEL_COLUMNS[1:]], axis=1)
    return VoxelTable(path, ids.astype(np.int64), xyz, rois, values["nc_testset"] if nc else None)


def read_concepts(path) -> dict[str, tuple[str, str]]:
    """THINGS concepts TSV (``things_concepts.tsv``): concept id (``uniqueID``, else ``Word`` with
    spaces as ``_``) → (word, definition). The definition column is the one whose name starts with
    ``Definition``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"concepts TSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh, delimiter="\t") if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable TSV file: {exc}") from None
    header = [h.strip() for h in rows[0]] if rows else []
    definition = next((i for i, h in enumerate(header) if h.startswith("Definition")), None)
    if "Word" not in header or definition is None:
        raise InputError(f"{path}: header needs Word and a Definition... column (the THINGS concepts TSV)")
    word, unique = header.index("Word"), header.index("uniqueID") if "uniqueID" in header else None
    out = {}
    for line, row in enumerate(rows[1:], 2):
        if len(row) <= max(word, definition, unique or 0):
            raise InputError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        key = row[unique].strip() if unique is not None else row[word].strip().replace(" ", "_")
        out.setdefault(key, (row[word].strip(), row[definition].strip()))
    return out
