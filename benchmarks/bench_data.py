"""Benchmark: wall time and peak memory of simulate + prepare_images + mask_roi.

Runs the data stages of a config (default: the embedded default, 2 subjects × VC/LVC/HVC) in one
process, like the rules do one after another, and prints the figures. Target (issue 3): under
60 s and under 2 GB on the 2-core machine.

    .venv/bin/python benchmarks/bench_data.py [--config config/config.yaml] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from fmrirecon.config import validate_config  # noqa: E402
from fmrirecon.data.simulation.dataset import simulate_dataset  # noqa: E402
from fmrirecon.data.steps import mask_roi, prepare_images  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.config) as fh:
        cfg = validate_config(yaml.safe_load(fh))
    ds = next(d for d in cfg["datasets"] if d["format"] == "simulated")
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        t0 = time.perf_counter()
        simulate_dataset(cfg["simulation"], cfg["seed"], ds["subjects"], str(raw))
        timings["simulate_dataset"] = time.perf_counter() - t0
        t = time.perf_counter()
        source = {
            "reader": "god_bdata", "root": str(raw), "truth": str(raw / "truth.h5"),
            "dataset": {"unpaired_images": str(raw / "images" / "unpaired")},
        }  # fmt: skip
        prepare_images(source, cfg["image_size"], str(Path(tmp) / "images.h5"), "bench")
        timings["prepare_images"] = time.perf_counter() - t
        t = time.perf_counter()
        for s in ds["subjects"]:
            for roi in ds["rois"]:
                src = {
                    "reader": "god_bdata", "truth": str(raw / "truth.h5"),
                    "files": {"subject": str(raw / f"Subject{s}.h5"), "unlabeled": str(raw / f"Subject{s}_unlabeled.h5")},
                }  # fmt: skip
                mask_roi(src, str(Path(tmp) / "images.h5"), s, roi, cfg["rois"], ds["normalization"],
                         "metadata", str(Path(tmp) / f"sub-{s}_roi-{roi}.h5"), ds["name"], "bench")  # fmt: skip
        timings[f"mask_roi ({len(ds['subjects'])} subjects x {len(ds['rois'])} ROIs)"] = time.perf_counter() - t
        total = time.perf_counter() - t0
    n_vox = sum(cfg["simulation"]["voxels"].values())
    print(f"config: {args.config}  ({len(ds['subjects'])} subjects, {n_vox} VC voxels, threads={args.threads})")
    for name, sec in timings.items():
        print(f"  {name:<40s} {sec:7.1f} s")
    print(f"  {'total wall time':<40s} {total:7.1f} s   (target < 60 s)")
    print(f"  {'peak memory (max RSS)':<40s} {peak_rss_mb():7.0f} MB  (target < 2048 MB)")


if __name__ == "__main__":
    main()
