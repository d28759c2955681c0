"""BData (bdpy / BrainDecoderToolbox2) HDF5 files, written and read with plain h5py.

On-disk layout (datasets.md §1.4)::

    /dataset                float64 (n_samples, n_columns)   voxels, labels and design columns
    /metadata/key           bytes   (n_keys,)                UTF-8 (fixed |S or vlen)
    /metadata/description   bytes   (n_keys,)
    /metadata/value         float64 (n_keys, n_columns)      row k describes every column
    /vmap/<key>/<value>     bytes                            optional value -> label maps

A *column-flag* key (``VoxelData``, ``DataType``, ``ROI_V1``) is 1 on the columns it names.
Columns are always located through the metadata, never by position. bdpy needs no ``/header``
group to load a file, so none is written (it would only hold timestamps and call stacks).

:class:`BDataBuilder` writes byte-identical files for identical content; :class:`BDataFile`
reads the metadata at open time and dataset columns on demand.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError

#: Fixed HDF5 settings so that equal content gives equal bytes (no timestamps, fixed format).
_LIBVER = ("earliest", "v110")


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8")


def _bytes_array(texts: list[str]) -> np.ndarray:
    """Fixed-length ``|S`` array, as bdpy writes (at least ``|S1`` when all are empty)."""
    encoded = [_to_bytes(t) for t in texts]
    width = max([1] + [len(b) for b in encoded])
    return np.array(encoded, dtype=f"S{width}")


class BDataBuilder:
    """Collects columns and metadata rows in memory, then :meth:`save` writes a BData file.

    Mirrors ``bdpy.BData``: :meth:`add` appends dataset columns with a flag row, and
    :meth:`add_metadata` adds a row with values on the columns flagged by ``where``. Misuse
    (wrong sample count, unknown ``where`` key) is a programming error and raises ``ValueError``.
    """

    def __init__(self, n_samples: int | None = None):
        self.n_samples = n_samples
        self._blocks: list[np.ndarray] = []  # each (n_samples, k) float64
        self._n_columns = 0
        self._keys: list[str] = []
        self._descriptions: dict[str, str] = {}
        self._values: dict[str, np.ndarray] = {}  # key -> (n_columns at time of last update,)
        self._vmaps: dict[str, dict[float, str]] = {}

    # -- building ---------------------------------------------------------------------------

    def _row(self, key: str) -> np.ndarray:
        """The metadata row of ``key`` padded with NaN to the current column count."""
        row = self._values[key]
        if len(row) < self._n_columns:
            row = np.concatenate([row, np.full(self._n_columns - len(row), np.nan)])
            self._values[key] = row
        return row

    def _set(self, key: str, row: np.ndarray, description: str) -> None:
        if key not in self._values:
            self._keys.append(key)
        self._values[key] = np.asarray(row, dtype=np.float64)
        self._descriptions[key] = description

    def add(self, name: str, values: np.ndarray, description: str | None = None) -> None:
        """Append ``values`` (n_samples,) or (n_samples, k) as k columns flagged by ``name``.

        The ``name`` row is 1 on the new columns and NaN elsewhere; adding to an existing name
        extends its columns (as bdpy does). Description defaults to ``'1 = name'``.
        """
        block = np.asarray(values, dtype=np.float64)
        if block.ndim == 1:
            block = block[:, None]
        if block.ndim != 2:
            raise ValueError(f"BData column block {name!r} must be 1-D or 2-D, got {block.shape}")
        if self.n_samples is None:
            self.n_samples = block.shape[0]
        if block.shape[0] != self.n_samples:
            raise ValueError(f"{name!r} has {block.shape[0]} rows, expected {self.n_samples}")
        start = self._n_columns
        self._blocks.append(block)
        self._n_columns += block.shape[1]
        row = self._row(name) if name in self._values else np.full(self._n_columns, np.nan)
        row = row.copy()
        row[start:] = 1.0
        self._set(name, row, description if description is not None else f"1 = {name}")

    def add_metadata(self, key: str, values: np.ndarray, description: str,
                     where: str = "VoxelData") -> None:
        """Add row ``key`` with ``values`` (one per column flagged by ``where``), NaN elsewhere."""
        if where not in self._values:
            raise ValueError(f"add_metadata({key!r}): where-key {where!r} has not been added")
        mask = self._row(where) == 1
        values = np.asarray(values, dtype=np.float64).ravel()
        if len(values) != int(mask.sum()):
            raise ValueError(f"add_metadata({key!r}): {len(values)} values for "
                             f"{int(mask.sum())} {where} columns")
        row = np.full(self._n_columns, np.nan)
        row[mask] = values
        self._set(key, row, description)

    def add_vmap(self, key: str, mapping: dict[float, str]) -> None:
        """Attach a value -> label map to column key ``key`` (stored under ``/vmap/key``)."""
        if key not in self._values:
            raise ValueError(f"add_vmap: key {key!r} has not been added")
        if any(isinstance(k, str) for k in mapping):
            raise ValueError("add_vmap: mapping keys must be numbers")
        self._vmaps.setdefault(key, {}).update({float(k): str(v) for k, v in mapping.items()})

    # -- writing ----------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the file atomically (temp file in the same folder, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        n_samples = self.n_samples or 0
        dataset = (np.hstack(self._blocks) if self._blocks
                   else np.zeros((n_samples, 0), dtype=np.float64))
        value = np.vstack([self._row(k) for k in self._keys]) if self._keys \
            else np.zeros((0, self._n_columns))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            with h5py.File(tmp, "w", libver=_LIBVER, track_order=False) as f:
                kw = dict(track_times=False)
                f.create_dataset("dataset", data=dataset, **kw)
                md = f.create_group("metadata")
                md.create_dataset("key", data=_bytes_array(self._keys), **kw)
                md.create_dataset("description",
                                  data=_bytes_array([self._descriptions[k] for k in self._keys]),
                                  **kw)
                md.create_dataset("value", data=value, **kw)
                vm = f.create_group("vmap")
                for key in sorted(self._vmaps):
                    group = vm.create_group(key)
                    for val, label in sorted(self._vmaps[key].items()):
                        group.create_dataset(str(val), data=_to_bytes(label), **kw)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


# -- reading ---------------------------------------------------------------------------------


def _decode_strings(node, h5file) -> list[str]:
    """Decode a key/description array: fixed or vlen bytes/str, or MATLAB v7.3 cellstr refs."""
    raw = node[()]
    if h5py.check_dtype(ref=node.dtype) is not None:  # MATLAB cellstr: refs to uint16 chars
        return ["".join(chr(int(c)) for c in np.asarray(h5file[ref]).ravel())
                for ref in np.asarray(raw).ravel()]
    out = []
    for item in np.atleast_1d(raw).ravel():
        out.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
    return [s.strip() for s in out]


class BDataFile:
    """A BData file opened for reading; metadata in memory, dataset columns read on demand.

    Attributes:
        path: the file.
        keys: metadata keys, in file order.
        descriptions: key -> description.
        n_samples: rows of ``/dataset``.
        n_columns: columns of ``/dataset``.
    """

    def __init__(self, path: Path, keys: list[str], descriptions: list[str], value: np.ndarray,
                 dataset_name: str, transposed: bool, n_samples: int,
                 vmaps: dict[str, dict[float, str]]):
        self.path = path
        self.keys = keys
        self.descriptions = dict(zip(keys, descriptions))
        self._value = value  # (n_keys, n_columns) float64
        self._dataset_name = dataset_name
        self._transposed = transposed  # on-disk (n_columns, n_samples), as MATLAB v7.3 saves
        self.n_samples = n_samples
        self.n_columns = value.shape[1]
        self._vmaps = vmaps

    @classmethod
    def open(cls, path) -> "BDataFile":
        """Open ``path``; InputError if it is missing, not HDF5, or lacks dataset/metadata."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"BData file not found: {path}")
        try:
            with h5py.File(path, "r") as f:
                return cls._read_header(path, f)
        except InputError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise InputError(f"{path} is not a readable BData HDF5 file "
                             f"(corrupt or truncated?): {exc}") from exc

    @classmethod
    def _read_header(cls, path: Path, f: h5py.File) -> "BDataFile":
        md_name = next((n for n in ("metadata", "metaData") if n in f), None)
        ds_name = next((n for n in ("dataset", "dataSet") if n in f), None)
        if md_name is None or ds_name is None:
            missing = " and ".join(n for n, v in (("/metadata", md_name), ("/dataset", ds_name))
                                   if v is None)
            raise InputError(f"{path}: no {missing} in the HDF5 file (expected a BData file "
                             f"with /dataset and /metadata/{{key,description,value}})")
        md = f[md_name]
        for part in ("key", "value"):
            if part not in md:
                raise InputError(f"{path}: /{md_name}/{part} is missing")
        keys = _decode_strings(md["key"], f)
        descriptions = (_decode_strings(md["description"], f) if "description" in md
                        else [""] * len(keys))
        value = np.asarray(md["value"][()], dtype=np.float64)
        dshape = f[ds_name].shape
        if len(dshape) != 2 or value.ndim != 2:
            raise InputError(f"{path}: /{ds_name} {dshape} and /{md_name}/value {value.shape} "
                             f"must both be 2-D")
        if value.shape[0] != len(keys) and value.shape[1] == len(keys):
            value = value.T  # MATLAB v7.3 stores (n_columns, n_keys)
        if value.shape[0] != len(keys):
            raise InputError(f"{path}: /{md_name}/value has {value.shape[0]} rows for "
                             f"{len(keys)} keys")
        n_columns = value.shape[1]
        if dshape[1] == n_columns:
            transposed, n_samples = False, dshape[0]
        elif dshape[0] == n_columns:
            transposed, n_samples = True, dshape[1]
        else:
            raise InputError(f"{path}: /{ds_name} has shape {dshape} but /{md_name}/value "
                             f"describes {n_columns} columns")
        vmaps: dict[str, dict[float, str]] = {}
        if "vmap" in f:
            for key, group in f["vmap"].items():
                vmaps[key] = {float(k): _decode_strings(group[k], f)[0] for k in group.keys()}
        return cls(path, keys, descriptions, value, ds_name, transposed, n_samples, vmaps)

    # -- metadata ---------------------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def _row(self, key: str) -> np.ndarray:
        if key not in self.keys:
            raise InputError(f"{self.path}: metadata key {key!r} not found; available keys: "
                             f"{', '.join(self.keys)}")
        return self._value[self.keys.index(key)]

    def column_mask(self, key: str) -> np.ndarray:
        """(n_columns,) bool: the columns where the ``key`` row equals 1."""
        return self._row(key) == 1

    def get_metadata(self, key: str, where: str | None = None) -> np.ndarray:
        """Row ``key`` as float64: (n_columns,), or only the columns flagged by ``where``."""
        row = self._row(key).copy()
        return row if where is None else row[self.column_mask(where)]

    def vmap(self, key: str) -> dict[float, str]:
        """The value -> label map stored under ``/vmap/key``."""
        if key not in self._vmaps:
            raise InputError(f"{self.path}: no vmap for key {key!r}; vmaps: "
                             f"{', '.join(sorted(self._vmaps)) or 'none'}")
        return dict(self._vmaps[key])

    # -- data -------------------------------------------------------------------------------

    def select(self, key: str) -> np.ndarray:
        """(n_samples, k) float64: ``dataset[:, column_mask(key)]``.

        Reads only the bounding column range of the selection from disk.
        """
        mask = self.column_mask(key)
        cols = np.flatnonzero(mask)
        if len(cols) == 0:
            return np.zeros((self.n_samples, 0), dtype=np.float64)
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        try:
            with h5py.File(self.path, "r") as f:
                ds = f[self._dataset_name]
                block = ds[lo:hi, :].T if self._transposed else ds[:, lo:hi]
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{self.path}: cannot read /{self._dataset_name} columns of "
                             f"{key!r} (corrupt or truncated file?): {exc}") from exc
        block = np.asarray(block, dtype=np.float64)
        return block if hi - lo == len(cols) else block[:, mask[lo:hi]]
