"""Unlabeled pretraining pools: subject-independent fMRI without stimuli, its own DAG artifact.

A pool is declared under the config's top-level ``pools:`` (``name -> entry``) and built by rule
``prepare_pool`` into ``results/pools/<name>/pool.h5``; a method that pretrains on it names it
(CAD: ``cad.fmri_mae.pool``). Unlike ``datasets[].unlabeled_fmri`` (a pool in the subject's own
voxel space), a pool has its own subjects and its own voxel space; the method that fine-tunes on a
subject bridges the two spaces.

Sources (``pools.<name>.format``):

- :mod:`.hcp_npz` — the HCP derivative MinD-Vis and CAD use, ``npz/<subject>/HCP_visual_voxel.npz``;
- ``simulated`` — an HCP-like tree in that layout, written by rule ``simulate_pool``
  (:mod:`fmrirecon.data.simulation.hcp_pool`) under ``results/pools/<name>/raw`` and read by the
  same reader, in a voxel space of its own (``simulation.voxels`` of the entry).

Preparation (:mod:`.prepare`, MinD-Vis' ``process_voxel_ts``): per subject, ``window_trs``-TR
windows averaged, wrap-padding to a multiple of ``patch_size``, one scalar z-score.

``pool.h5``::

    /fmri            (N, n_voxels_padded) float32, subjects one after the other
    /subject_index   (N,) int32, row of the ``subjects`` attribute
    /window          (N,) int32, the window within the subject's run
    attrs            kind=fmri_pool, pool, format, layout (the files' layout), root, sources (JSON: the files read), subjects,
                     rois, voxels_per_roi, n_voxels, n_voxels_padded, patch_size, padding,
                     trs_per_subject, window_trs, samples_per_subject, normalization, config_hash
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np

from ...errors import InputError
from ..atomic import atomic_path
from . import hcp_npz
from .prepare import padded_length, prepare_subject

log = logging.getLogger(__name__)

SIMULATED = "simulated"
#: pool formats -> reader module (a simulated pool is written in, and read as, the first layout)
FORMATS = {hcp_npz.NAME: hcp_npz}
SIMULATED_LAYOUT = hcp_npz
#: a dataset may not be named like the pools' folder under results/
RESERVED_NAME = "pools"


def pool_root(name: str, spec: dict) -> str:
    """Folder of the pool's published files (generated for a simulated pool)."""
    return f"results/pools/{name}/raw" if spec["format"] == SIMULATED else spec["path"]


def reader_of(spec: dict):
    return SIMULATED_LAYOUT if spec["format"] == SIMULATED else FORMATS[spec["format"]]


def pool_subjects(name: str, spec: dict) -> list[str]:
    """The configured subjects, else every subject found in the pool's folder (sorted)."""
    if spec["subjects"]:
        return list(spec["subjects"])
    return reader_of(spec).find_subjects(pool_root(name, spec))


def pool_files(name: str, spec: dict) -> list[str]:
    reader, root = reader_of(spec), pool_root(name, spec)
    return [reader.subject_file(root, s) for s in pool_subjects(name, spec)]


def pool_source(name: str, spec: dict) -> dict:
    """What rule ``prepare_pool`` runs with (its params): the files and the preparation."""
    keys = ("format", "rois", "window_trs", "patch_size")
    return {"pool": name, "root": pool_root(name, spec), "subjects": pool_subjects(name, spec),
            "files": pool_files(name, spec), **{k: spec[k] for k in keys}}  # fmt: skip


def check_pools(config: dict) -> None:
    """One-line InputError for a pool entry that cannot be built, or a dataset named ``pools``."""
    for i, ds in enumerate(config["datasets"]):
        if ds["name"] == RESERVED_NAME:
            raise InputError(f"config error at datasets[{i}].name: {RESERVED_NAME!r} is reserved for "
                             "results/pools/ (the pretraining pools)")  # fmt: skip
    for name, spec in config.get("pools", {}).items():
        where = f"pools.{name}"
        if spec["format"] == SIMULATED:
            if not spec["subjects"]:
                raise InputError(f"config error at {where}.subjects: a simulated pool needs its subject labels")
            missing = [r for r in spec["rois"] if r not in spec["simulation"]["voxels"]]
            if missing:
                raise InputError(f"config error at {where}.simulation.voxels: no voxel count for {missing} "
                                 f"(rois {spec['rois']})")  # fmt: skip
            if spec["simulation"]["trs"] % spec["window_trs"]:
                raise InputError(f"config error at {where}.simulation.trs: {spec['simulation']['trs']} TRs are "
                                 f"not a multiple of window_trs {spec['window_trs']}")  # fmt: skip
            continue
        if spec["format"] not in FORMATS:
            raise InputError(f"config error at {where}.format: {spec['format']!r} is not one of "
                             f"{sorted([*FORMATS, SIMULATED])}")  # fmt: skip
        if not spec["path"]:
            raise InputError(f"config error at {where}.path: format {spec['format']} needs the pool's folder")
        if not pool_files(name, spec):
            example = reader_of(spec).subject_file(spec["path"], "<subject>")
            raise InputError(f"config error at {where}.path: no {example} found")


def build_pool(source: dict, output: str, config_hash: str = "") -> None:
    """Rule ``prepare_pool``: read every subject, prepare it (:mod:`.prepare`), write ``pool.h5``.

    Raises:
        InputError: one line naming the file: a bad npz (:func:`.hcp_npz.read_subject`), a TR
            count that is not a multiple of ``window_trs``, fewer voxels than one patch, or a
            subject whose voxel count differs from the first one's (another space).
    """
    reader = reader_of(source)
    window, patch = int(source["window_trs"]), int(source["patch_size"])
    files, subjects = source["files"], source["subjects"]
    if not files:
        raise InputError(f"pool {source['pool']}: no subject files under {source['root']}")
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as h5:
        first = None
        for k, path in enumerate(files):
            v, counts = reader.read_subject(path, source["rois"])
            if v.shape[1] < patch:
                raise InputError(f"{path}: {v.shape[1]} voxels in {'+'.join(source['rois'])} cannot be patched: "
                                 f"fewer than one patch of {patch} (pools.{source['pool']}.patch_size)")  # fmt: skip
            if first is None:
                first = {"path": path, "trs": v.shape[0], "counts": counts, "n": v.shape[1]}
                if v.shape[0] % window:
                    raise InputError(f"{path}: {v.shape[0]} TRs are not a multiple of window_trs {window} "
                                     f"(pools.{source['pool']}.window_trs)")  # fmt: skip
                per = v.shape[0] // window
                n_pad = padded_length(v.shape[1], patch)
                fmri = h5.create_dataset("fmri", (per * len(files), n_pad), np.float32, chunks=(per, n_pad))
            elif counts != first["counts"] or v.shape[0] != first["trs"]:
                raise InputError(f"{path}: {v.shape[0]} TRs x {counts} voxels, but {first['path']} has "
                                 f"{first['trs']} x {first['counts']}; a pool is one voxel space and one run length")  # fmt: skip
            fmri[k * per : (k + 1) * per] = prepare_subject(v, window, patch)
            log.info("%s: %d TRs x %d voxels -> %d samples x %d", path, v.shape[0], v.shape[1], per, n_pad)
        n = per * len(files)
        h5.create_dataset("subject_index", data=np.repeat(np.arange(len(files), dtype=np.int32), per))
        h5.create_dataset("window", data=np.tile(np.arange(per, dtype=np.int32), len(files)))
        attrs = {
            "kind": "fmri_pool", "pool": source["pool"], "format": source["format"], "layout": reader.NAME, "root": str(source["root"]),
            "sources": json.dumps([str(p) for p in files]), "subjects": json.dumps(list(subjects)),
            "rois": json.dumps(list(source["rois"])), "voxels_per_roi": json.dumps(first["counts"]),
            "n_voxels": first["n"], "n_voxels_padded": n_pad, "patch_size": patch,
            "padding": "wrap: the first voxels repeated up to a multiple of patch_size",
            "trs_per_subject": first["trs"], "window_trs": window, "samples_per_subject": per, "n_samples": n,
            "normalization": "one scalar z-score per subject over its padded windows (MinD-Vis)",
            "config_hash": config_hash,
        }  # fmt: skip
        h5.attrs.update(attrs)
    log.info("wrote %s: %d samples x %d voxels (%d before padding) from %d subjects", output, n, n_pad, first["n"], len(files))


def read_pool(path: str | Path) -> tuple[np.ndarray, dict]:
    """(fmri (N, V) float32, attrs) of a ``pool.h5``; InputError when it is not one."""
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("kind") != "fmri_pool" or "fmri" not in h5:
                raise InputError(f"{path}: not a pool file (expected /fmri and attribute kind=fmri_pool)")
            return np.asarray(h5["fmri"], np.float32), dict(h5.attrs)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pool ({exc})") from None
