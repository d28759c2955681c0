"""Benchmark: read one NSD subject (nsd reader), mask it to nsdgeneral and z-score it per session.

Writes a tree in NSD's published layout (``write_nsd_tree``) at real shapes where feasible: an
81×104×83 grid (subj01), 750 trials per session, noise betas inside a brain-shaped ellipsoid
(zeros outside, as NSD's liberal brain mask) and an nsdgeneral mask of 15,724 voxels; the
stimulus brick is a placeholder (images are not part of this measurement). Then, each in a fresh
process so that peak RSS belongs to that stage alone, it times

- ``read``:    ``nsd.read_subject`` (every session streamed, masked, / 300),
- ``zscore``:  read + ``masking.normalise(..., "run")`` (per-session z-scoring, as mask_roi does),
- ``prepare``: read + ``masking.prepare_subject`` (all of rule mask_roi except writing),

and extrapolates time and memory linearly to 40 sessions. Target: a real 40-session subject in
under 15 min and under 8 GB on 2 cores. Real size needs ~1 GB of disk per session written.

    .venv/bin/python benchmarks/bench_nsd_read.py --small                   # a few seconds
    .venv/bin/python benchmarks/bench_nsd_read.py --sessions 4 [--format hdf5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from fmrirecon.data import masking
from fmrirecon.data.readers import nsd
from fmrirecon.data.readers.base import ImageSplit, StimulusSet
from fmrirecon.data.simulation.nsd_layout import write_nsd_tree

REAL = {"grid": (81, 104, 83), "trials": 750, "nsdgeneral": 15724, "images": 10000, "shared": 1000}
SMALL = {"grid": (40, 50, 40), "trials": 150, "nsdgeneral": 2000, "images": 2000, "shared": 200}
DESIGN_SESSIONS = 40


def rss_mb(key: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident memory. Not ru_maxrss: on Linux that
    keeps the parent's peak across fork + exec, and the parent held a whole session while writing."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _volumes(shape, n_general, rng):
    """Brain ellipsoid (betas nonzero), cortex ribbon = brain, nsdgeneral = the voxels nearest a posterior point."""
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    brain = (g**2).sum(-1) < 0.85
    dist = ((g - np.array([0.0, -0.6, 0.0])) ** 2).sum(-1)
    dist[~brain] = np.inf
    general = np.full(shape, -1, np.int16)
    general[brain] = 0
    general.ravel()[np.argsort(dist.ravel())[:n_general]] = 1
    return brain, general


def write_tree(root: Path, scale: dict, sessions: int, fmt: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_total = DESIGN_SESSIONS * scale["trials"]
    masterordering = rng.integers(1, scale["images"] + 1, n_total)  # every column shown ~3 times
    subjectim = rng.permutation(73000)[: scale["images"]][None, :] + 1
    brain, general = _volumes(scale["grid"], scale["nsdgeneral"], rng)
    n_brain = int(brain.sum())

    def sessions_iter():
        for _ in range(sessions):
            vol = np.zeros((scale["trials"], *scale["grid"]), np.int16)
            vol[:, brain] = rng.integers(-900, 900, (scale["trials"], n_brain), dtype=np.int16)
            yield vol

    write_nsd_tree(
        root, images=np.zeros((1, 1, 1, 3), np.uint8), subjectim=subjectim, masterordering=masterordering,
        sharedix=subjectim[0, : scale["shared"]], trials_per_session=scale["trials"], betas={1: sessions_iter()},
        rois={1: {"nsdgeneral": general}}, roi_names={"nsdgeneral": {1: "nsdgeneral"}}, betas_format=fmt,
        responses=False, stim_info=False,
    )  # fmt: skip


def _stimuli(root: Path, dataset: dict) -> StimulusSet:
    """The StimulusSet mask_roi would read from images.h5 (ids only, no pixels)."""
    opts = nsd.parse_options(dataset["options"])
    design = nsd.load_design(root / nsd.DESIGN)
    ids, _ = nsd.seen_images(design, root, "1", opts)
    test = np.intersect1d(ids, design.shared)
    train = np.setdiff1d(ids, design.shared)
    empty = lambda i: ImageSplit(np.zeros((len(i), 0, 0, 3), np.uint8), np.array([f"nsd{x:05d}" for x in i]),
                                 i.astype(np.float64), np.full(len(i), -1))  # fmt: skip
    return StimulusSet(train=empty(train), test=empty(test))


def run_stage(root: Path, stage: str, fmt: str, upto: int) -> dict:
    base = rss_mb("VmRSS")
    options = {"betas_format": "hdf5" if fmt == "hdf5" else "nifti", "sessions": f"1-{upto}"}
    dataset = {"subjects": ["1"], "rois": ["nsdgeneral"], "options": options}
    stimuli = _stimuli(root, dataset)
    t0 = time.perf_counter()
    rec = nsd.read_subject(nsd.subject_inputs(dataset, str(root), "1"), stimuli)
    out = {"stage": stage, "read_s": time.perf_counter() - t0, "shape": list(rec.fmri.shape),
           "sessions": len(rec.attrs["sessions"]), "base_rss_mb": base}  # fmt: skip
    t1 = time.perf_counter()
    if stage == "zscore":  # in place, as prepare_subject does
        masking.normalise(rec.fmri, rec.run, rec.datatype == 1, "run", out=rec.fmri)
    elif stage == "prepare":  # as rule mask_roi calls it (consume: the recording is dropped once masked)
        masking.prepare_subject(rec, "nsdgeneral", {}, "run", n_test_images=len(stimuli.test), roster=nsd.ROIS,
                                consume=True)  # fmt: skip
    out["after_read_s"] = time.perf_counter() - t1
    out["peak_rss_mb"] = rss_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="a 40×50×40 grid, 150 trials per session")
    ap.add_argument("--format", choices=("nii.gz", "hdf5"), default="nii.gz")
    ap.add_argument("--keep", help="write the tree here and keep it (default: a temporary folder)")
    ap.add_argument("--stages", default="read,zscore,prepare")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage on --keep
    ap.add_argument("--upto", type=int, help=argparse.SUPPRESS)  # internal: read sessions 1..upto
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(run_stage(Path(args.keep), args.stage, args.format, args.upto)))
        return
    scale = SMALL if args.small else REAL
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        write_tree(root, scale, args.sessions, args.format)
        print(f"wrote {args.sessions} session(s) of {scale['trials']} trials on {scale['grid']} as {args.format} "
              f"in {time.perf_counter() - t0:.1f} s ({root})")  # fmt: skip
        for stage in args.stages.split(","):
            # two runs (half and all sessions) separate the per-session growth from fixed costs
            runs = [_child(root, stage, args.format, n) for n in sorted({max(1, args.sessions // 2), args.sessions})]
            r = runs[-1]
            n, total_s = r["sessions"], r["read_s"] + r["after_read_s"]
            grown = r["peak_rss_mb"] - r["base_rss_mb"]
            print(f"{stage:8s} {r['shape'][0]} trials × {r['shape'][1]} voxels: read {r['read_s']:.1f} s "
                  f"({r['read_s'] / n:.2f} s/session) + {r['after_read_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} "
                  f"MB (+{grown:.0f} MB over {r['base_rss_mb']:.0f} MB of imports)")  # fmt: skip
            if len(runs) == 2:
                a = runs[0]
                dn = n - a["sessions"]
                mem_slope = ((r["peak_rss_mb"] - r["base_rss_mb"]) - (a["peak_rss_mb"] - a["base_rss_mb"])) / dn
                t_slope = (total_s - a["read_s"] - a["after_read_s"]) / dn
                mem40, t40 = r["peak_rss_mb"] + mem_slope * (40 - n), total_s + t_slope * (40 - n)
                how = f"per-session slope from {a['sessions']} and {n} sessions"
            else:
                mem40, t40 = r["base_rss_mb"] + grown * 40 / n, total_s * 40 / n
                how = "proportional, an upper bound"
            print(f"{'':8s} → 40 sessions: ~{t40 / 60:.1f} min, ~{mem40 / 1024:.1f} GB ({how})")


def _child(root: Path, stage: str, fmt: str, upto: int) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, "--keep", str(root), "--format", fmt, "--upto", str(upto)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

if __name__ == "__main__":
    main()
