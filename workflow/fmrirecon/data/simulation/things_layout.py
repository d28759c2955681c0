"""Write the GOD-like experiment in THINGS-fMRI's published table layout (:mod:`.god_layouts`).

Under ``raw/things_fmri/`` (read back by :mod:`fmrirecon.data.readers.things_fmri`)::

    betas_csv/sub-XX_ResponseData.h5       pandas "fixed" store, written with h5py byte-for-byte in
                                           pandas' structure (``axis0`` a pickled label array)
    betas_csv/sub-XX_StimulusMetadata.csv  train / test trials in presentation order (no imagery)
    betas_csv/sub-XX_VoxelMetadata.csv     voxel_id, voxel_x/y/z (grid indices), noise ceilings,
                                           the published ROI columns (+ three glasser-* columns)
    object_images/<concept>/<name>.jpg     the training and test images (JPEG, quality 95, 4:4:4)
    things_concepts.tsv                    Word, uniqueID, Definition per simulated category
    simulation_stimuli.tsv                 the simulator's own list (split, row, stimulus, concept)

Concepts are the category names with ``_`` for spaces (``red striped star`` →
``red_striped_star``). An image keeps its GOD name (``n<synset>_<k>.jpg``, not THINGS'
``<concept>_<NN>s.jpg``): the simulation truth (foreground masks) is matched by image name, and the
reader's name order is then GOD's list order, so truth.h5's per-voxel arrays line up
(:data:`TRUTH_PER_VOXEL`). Subject ``1`` is ``sub-01``. Runs of the simulation become (session,
run) pairs, 10 runs per session as in THINGS. ROIs: V1, V2, V3, V4 → hV4; LOC, FFA, PPA and the
optional OPA (→ TOS) and RSC into ``l``/``r`` columns by the sign of x (x < 0 left); other published
ROI columns are written as zeros; any other simulated ROI is left out of every column (the reader
view then reads every voxel, ``voxels: all``). ``nc_testset`` / ``nc_singletrial`` are estimated from
the written test trials (``100 · ncsnr² / (ncsnr² + 1/n)``, THINGS' and NSD's formula).

:func:`write_response_data`, :func:`write_stimulus_table` and :func:`write_voxel_table` are pure
writers that check nothing, so tests also write broken trees with them.
"""

from __future__ import annotations

import csv
import itertools
import pickle
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ..readers.things_fmri import BILATERAL, NAME, ROI_COLUMNS, roi_definitions
from .god_layouts import SimStimuli, SimSubject

TRUTH_PER_VOXEL = True
RUNS_PER_SESSION = 10
#: simulated ROI → published column (``l``/``r`` prefix added by hemisphere for the bilateral ones)
ROI_MAP = {"V1": "V1", "V2": "V2", "V3": "V3", "V4": "hV4", "LOC": "LOC", "FFA": "FFA", "PPA": "PPA",
           "OPA": "TOS", "RSC": "RSC"}  # fmt: skip
GLASSER = ("glasser-V1", "glasser-V2", "glasser-FFC")
_STIMULI = "simulation_stimuli.tsv"
def _set(node, key: str, value) -> None:
    """An attribute typed as PyTables writes it: str as a NUL-terminated UTF-8 string ("" as an
    empty dataspace), bytes as an ASCII string, bool as an 8-bit bitfield, int as int64."""
    if key in node.attrs:
        del node.attrs[key]
    if isinstance(value, (str, bytes)):
        raw = value.encode() if isinstance(value, str) else value
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(max(1, len(raw)))
        tid.set_strpad(h5py.h5t.STR_NULLTERM)
        tid.set_cset(h5py.h5t.CSET_UTF8 if isinstance(value, str) else h5py.h5t.CSET_ASCII)
        space = h5py.h5s.create(h5py.h5s.NULL if not raw else h5py.h5s.SCALAR)
        attr = h5py.h5a.create(node.id, key.encode(), tid, space)
        if raw:
            attr.write(np.array(raw, dtype=f"S{len(raw)}"), mtype=tid)
    elif isinstance(value, bool):
        attr = h5py.h5a.create(node.id, key.encode(), h5py.h5t.NATIVE_B8, h5py.h5s.create(h5py.h5s.SCALAR))
        attr.write(np.array(int(value), np.uint8), mtype=h5py.h5t.NATIVE_B8)
    else:
        node.attrs.create(key, np.int64(value))


_NONE = b"N."  # how PyTables stores an attribute that is None (a protocol-0 pickle)


# -- the pandas fixed-format store ---------------------------------------------------------------


def _node_attrs(ds, cls: str, version: str, **extra) -> None:
    _set(ds, "CLASS", cls)
    _set(ds, "PSEUDOATOM" if cls == "VLARRAY" else "FLAVOR", "object" if cls == "VLARRAY" else "numpy")
    _set(ds, "TITLE", "")
    _set(ds, "VERSION", version)
    for key, value in extra.items():
        _set(ds, key, value)
    _set(ds, "transposed", True)


def pickled_labels(labels) -> bytes:
    """The bytes PyTables stores for pandas' object label array ``labels`` (a pickle of it)."""
    return pickle.dumps(np.array(list(labels), dtype=object), protocol=pickle.HIGHEST_PROTOCOL)


def _vlarray(g, key: str, payload: bytes, **attrs) -> None:
    ds = g.create_dataset(key, (1,), maxshape=(None,), chunks=(4096,), dtype=h5py.vlen_dtype(np.uint8))
    ds[0] = np.frombuffer(payload, np.uint8)
    _node_attrs(ds, "VLARRAY", "1.4", kind="object", name=_NONE, **attrs)


def _index(g, key: str, labels) -> None:
    """A column-label Index as pandas writes it: strings as a fixed-width array, integers of an
    object index (a subset of the mixed column index) as a pickle."""
    labels = list(labels)
    _set(g, f"{key}_variety", "regular")
    if all(isinstance(x, str) for x in labels):
        ds = g.create_dataset(key, data=np.array([x.encode() for x in labels]))
        _node_attrs(ds, "ARRAY", "2.4", kind="string", name=_NONE, nan_rep="")
    else:
        _vlarray(g, key, pickled_labels(labels))


def write_response_data(path, voxel_id, betas, *, trial_labels=None, voxel_id_first: bool = False,
                        split: int | None = None, axis0: bytes | None = None, key: str = "ResponseData") -> Path:
    """Write ``betas`` (voxels, trials) with its ``voxel_id`` as ``DataFrame.to_hdf(path, key)`` does
    for the frame ``[voxel_id, 0, 1, ..., n-1]``: block ``values`` (rows, columns) and ``items`` per
    dtype, ``axis0`` the pickled column labels, ``axis1`` the row numbers.

    ``trial_labels`` (default ``0..n-1``) label the trial columns; ``voxel_id_first`` puts the
    voxel_id block first (pandas' order depends on how the frame was built); ``split`` cuts the
    trial columns into two float blocks at that column (the second float64, as a frame of mixed
    float dtypes is stored); ``axis0`` replaces the pickled column index by other bytes (tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    betas = np.asarray(betas)
    labels = list(range(betas.shape[1])) if trial_labels is None else list(trial_labels)
    cuts = [0, betas.shape[1]] if split is None else [0, split, betas.shape[1]]
    trial_blocks = [(labels[a:b], betas[:, a:b].astype(np.float64 if i else betas.dtype))
                    for i, (a, b) in enumerate(itertools.pairwise(cuts))]  # fmt: skip
    id_block = (["voxel_id"], np.asarray(voxel_id, np.int64)[:, None])
    blocks = [id_block, *trial_blocks] if voxel_id_first else [*trial_blocks, id_block]
    with h5py.File(path, "w", track_order=True) as f:
        for k, v in (("CLASS", "GROUP"), ("PYTABLES_FORMAT_VERSION", "2.1"), ("TITLE", ""), ("VERSION", "1.0")):
            _set(f, k, v)
        g = f.create_group(key, track_order=True)
        for k, v in (("CLASS", "GROUP"), ("TITLE", ""), ("VERSION", "1.0"), ("pandas_type", "frame"),
                     ("encoding", "UTF-8"), ("errors", "strict"), ("ndim", 2), ("nblocks", len(blocks)),
                     ("axis0_variety", "regular"), ("axis1_variety", "regular")):
            _set(g, k, v)
        _vlarray(g, "axis0", pickled_labels(["voxel_id", *labels]) if axis0 is None else axis0)
        ds = g.create_dataset("axis1", data=np.arange(betas.shape[0], dtype=np.int64))
        _node_attrs(ds, "ARRAY", "2.4", kind="integer", name=_NONE)
        for i, (items, values) in enumerate(blocks):
            ds = g.create_dataset(f"block{i}_values", data=values)  # (rows, columns): pandas' block, transposed
            _node_attrs(ds, "ARRAY", "2.4")
            _index(g, f"block{i}_items", items)
    return path


# -- CSV tables ----------------------------------------------------------------------------------


def _write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)
    return path


def write_stimulus_table(path, trial_type, session, run, stimulus, concept, subject_id: int = 1) -> Path:
    """``sub-XX_StimulusMetadata.csv``: one row per trial column (``trial_id`` = the row)."""
    rows = [(k, int(s), int(r), subject_id, t, st, c)
            for t, (k, s, r, st, c) in enumerate(zip(trial_type, session, run, stimulus, concept))]  # fmt: skip
    return _write_csv(Path(path), ("trial_type", "session", "run", "subject_id", "trial_id", "stimulus", "concept"),
                      rows)  # fmt: skip


def write_voxel_table(path, voxel_id, xyz, rois: dict, nc_singletrial=None, nc_testset=None, subject_id: int = 1,
                      columns=ROI_COLUMNS + GLASSER) -> Path:
    """``sub-XX_VoxelMetadata.csv`` with the published columns; ``rois``: column → (V,) 0/1 (absent
    columns are zeros); ``columns``: the ROI columns to write."""
    n = len(voxel_id)
    zero = np.zeros(n)
    nc_s = zero if nc_singletrial is None else np.asarray(nc_singletrial)
    nc_t = zero if nc_testset is None else np.asarray(nc_testset)
    header = ["voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z", "nc_singletrial", "nc_testset",
              "splithalf_uncorrected", "splithalf_corrected", "prf-eccentricity", "prf-polarangle", "prf-rsquared",
              "prf-size", *columns]  # fmt: skip
    flags = [np.asarray(rois.get(c, np.zeros(n, bool))).astype(int) for c in columns]
    xyz = np.asarray(xyz)
    rows = ([int(voxel_id[v]), subject_id, *(int(x) for x in xyz[v]), f"{nc_s[v]:.6f}", f"{nc_t[v]:.6f}",
             0.0, 0.0, 0.0, 0.0, 0.0, 0.0, *(int(f[v]) for f in flags)] for v in range(n))  # fmt: skip
    return _write_csv(Path(path), header, rows)


# -- the GOD-like design in this layout ----------------------------------------------------------


def concept_of(category_name: str) -> str:
    return "_".join(category_name.split())


def subject_prefix(subject: str) -> str:
    return f"sub-{int(subject):02d}" if str(subject).isdigit() else f"sub-{subject}"


def write_stimuli(folder, stimuli: SimStimuli) -> None:
    folder = Path(folder)
    listing = []
    for split, names, cats, images in (("train", stimuli.train_names, stimuli.train_category, stimuli.train_images),
                                       ("test", stimuli.test_names, stimuli.test_category, stimuli.test_images)):
        for row, (name, cat, image) in enumerate(zip(names, cats, images)):
            concept = concept_of(stimuli.category_names[int(cat)])
            d = folder / "object_images" / concept
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(image, np.uint8)).save(d / f"{name}.jpg", quality=95, subsampling=0)
            listing.append((split, row, f"{name}.jpg", concept))
    _write_csv(folder / _STIMULI, ("split", "row", "stimulus", "concept"), listing)
    concepts = sorted({c for *_, c in listing})
    with open(folder / "things_concepts.tsv", "w", newline="") as fh:
        out = csv.writer(fh, delimiter="\t", lineterminator="\n")
        out.writerow(("Word", "uniqueID", "Definition (from WordNet, Google, or Wikipedia)"))
        out.writerows((c.replace("_", " "), c, f"a {c.replace('_', ' ')} on a textured background") for c in concepts)


def _noise_ceilings(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nc_singletrial, nc_testset) in percent from the test trials ``x`` of images ``rows``."""
    ids = np.unique(rows)
    reps = np.array([np.sum(rows == i) for i in ids])
    means = np.stack([x[rows == i].mean(0) for i in ids])
    noise_var = np.mean([x[rows == i].var(0, ddof=1) for i in ids], axis=0)
    signal_var = np.clip(means.var(0, ddof=1) - noise_var * np.mean(1.0 / reps), 0.0, None)
    ncsnr2 = signal_var / np.where(noise_var > 0, noise_var, np.inf)
    return 100 * ncsnr2 / (ncsnr2 + 1.0), 100 * ncsnr2 / (ncsnr2 + np.mean(1.0 / reps))


def _published_rois(roi: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for sim, col in ROI_MAP.items():
        member = roi == sim
        if col in BILATERAL:
            out[f"l{col}"] = member & (x < 0)
            out[f"r{col}"] = member & (x >= 0)
        else:
            out[col] = member
    out["glasser-V1"], out["glasser-V2"], out["glasser-FFC"] = roi == "V1", roi == "V2", roi == "FFA"
    return out


def write_subject(folder, sub: SimSubject) -> None:
    folder = Path(folder)
    listing = list(csv.reader((folder / _STIMULI).read_text().splitlines()))[1:]
    lookup = {(s, int(r)): (stim, c) for s, r, stim, c in listing}
    keep = np.flatnonzero(np.isin(sub.datatype, (1, 2)))  # imagery (3) is not part of THINGS
    split = np.where(sub.datatype[keep] == 1, "train", "test")
    stim = [lookup[(s, int(r))] for s, r in zip(split, sub.image_row[keep])]
    _, k = np.unique(sub.run[keep], return_inverse=True)
    prefix = subject_prefix(sub.subject)
    betas = folder / "betas_csv"
    sid = int(sub.subject) if str(sub.subject).isdigit() else 1
    write_stimulus_table(betas / f"{prefix}_StimulusMetadata.csv", split, k // RUNS_PER_SESSION + 1,
                         k % RUNS_PER_SESSION + 1, [s for s, _ in stim], [c for _, c in stim], sid)  # fmt: skip
    x = sub.raw[keep].astype(np.float32)
    voxel_id = np.arange(x.shape[1])
    write_response_data(betas / f"{prefix}_ResponseData.h5", voxel_id, x.T)
    test = sub.datatype[keep] == 2
    nc_single, nc_test = _noise_ceilings(x[test].astype(np.float64), sub.image_row[keep][test])
    xyz = np.asarray(sub.xyz, np.float64)
    grid = np.zeros(xyz.shape, np.int64)
    for a in range(3):
        steps = np.diff(np.unique(xyz[:, a]))
        grid[:, a] = np.round((xyz[:, a] - xyz[:, a].min()) / (steps.min() if len(steps) else 1.0))
    write_voxel_table(betas / f"{prefix}_VoxelMetadata.csv", voxel_id, grid, _published_rois(sub.roi, xyz[:, 0]),
                      nc_single, nc_test, sid)  # fmt: skip


def reader_view(dataset: dict, raw: str, simulation: dict) -> dict:
    """The entry as the things_fmri reader reads ``raw/things_fmri``: the concepts TSV for captions,
    the simulator's unpaired images, no gallery (its categories are synsets, this format's are
    concept indices); every voxel when a simulated ROI has no THINGS column."""
    unmapped = set(simulation.get("voxels") or {}) - set(ROI_MAP)
    opts = {"concepts_tsv": "things_concepts.tsv", **({"voxels": "all"} if unmapped else {}),
            **(dataset.get("options") or {})}  # fmt: skip
    return {**dataset, "format": NAME, "path": f"{raw}/{NAME}", "options": opts,
            "unpaired_images": dataset["unpaired_images"] or f"{raw}/images/unpaired",
            "gallery_images": dataset["gallery_images"] or ""}  # fmt: skip


def roi_names(dataset: dict, simulation: dict | None = None) -> set[str]:
    return set(roi_definitions(ROI_COLUMNS))
