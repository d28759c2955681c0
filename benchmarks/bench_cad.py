"""Benchmark: training steps/s of every CAD (paper 001) stage and sampling images/s.

Runs each stage function of :mod:`fmrirecon.methods.cad` for one epoch (``--epochs``) on prepared files
of the DAG (default: the embedded default's subject 1, VC, after its data stages have run), with the
``cad`` settings of a config, in one process, and prints steps/s per stage and sampled images/s.

    .venv/bin/python benchmarks/bench_cad.py [--config config/config.yaml] [--method cad]
        [--data results/simgod/sub-1/roi-VC/data.h5] [--images results/simgod/images.h5]
        [--threads 1] [--epochs 1]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fmrirecon.methods.cad import ldm as cad_ldm, mae as cad_mae  # noqa: E402
from fmrirecon.config import method_settings, validate_config  # noqa: E402
from fmrirecon.data import prepared  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--method", default="cad")
    ap.add_argument("--data", default="results/simgod/sub-1/roi-VC/data.h5")
    ap.add_argument("--images", default="results/simgod/images.h5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.config) as fh:
        cfg = validate_config(yaml.safe_load(fh))
    s = copy.deepcopy(method_settings(cfg, args.method))
    for block in ("fmri_mae", "image_mae", "cross_modal", "autoencoder", "ldm_pretrain", "ldm"):
        s[block]["epochs"] = args.epochs
    training = {**cfg["training"], "device": "auto"}
    d = prepared.read_subject_file(args.data)
    stim = prepared.read_images_file(args.images, splits=("train", "test", "unpaired"), with_images=False)
    n_train, n_unl = len(d["train/fmri"]), len(d.groups.get("unlabeled", {}).get("fmri", []))
    n_images = len(stim.train) + (len(stim.unpaired) if stim.unpaired is not None else 0)
    samples = {"fmri_mae": n_unl + n_train, "image_mae": n_images, "cross_modal": n_train,
               "autoencoder": n_images, "ldm_pretrain": n_images, "ldm": n_train}  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        common = dict(settings=s, training={**training, "checkpoint_dir": str(t / "ckpt")}, seed=0)

        def run(name, fn, block, **kw):
            t0 = time.perf_counter()
            fn(**kw, **common, checkpoint_dir=str(t / "ckpt" / name), loss_log=str(t / f"{name}.tsv"))
            wall = time.perf_counter() - t0
            steps = math.ceil(samples[block] / s[block]["batch_size"]) * s[block]["epochs"]
            rows.append((name, steps, wall, steps / wall))

        run("pretrain_fmri_mae", cad_mae.pretrain_fmri_mae, "fmri_mae", data=args.data, model=str(t / "f.safetensors"))
        run("pretrain_image_mae", cad_mae.pretrain_image_mae, "image_mae", images=args.images, model=str(t / "i.safetensors"))
        run("tune_cross_modal", cad_mae.tune_cross_modal, "cross_modal", data=args.data, images=args.images,
            fmri_mae=str(t / "f.safetensors"), image_mae=str(t / "i.safetensors"), model=str(t / "c.safetensors"))  # fmt: skip
        run("train_autoencoder", cad_ldm.train_autoencoder, "autoencoder", images=args.images, model=str(t / "ae"))
        run("pretrain_ldm", cad_ldm.pretrain_ldm, "ldm_pretrain", images=args.images, autoencoder=str(t / "ae"),
            model=str(t / "ldm0"))  # fmt: skip
        run("train_ldm", cad_ldm.train_ldm, "ldm", data=args.data, images=args.images, ldm_folder=str(t / "ldm0"),
            fmri_encoder=str(t / "c.safetensors"), model=str(t / "ldm.safetensors"))  # fmt: skip
        t0 = time.perf_counter()
        cad_ldm.reconstruct_cad(data=args.data, images=args.images, ldm_folder=str(t / "ldm0"),
                            model=str(t / "ldm.safetensors"), settings=s, training=training, seed=0,
                            method=args.method, recon=str(t / "recon.h5"))  # fmt: skip
        n_img = len(d["test/fmri"]) * s["sampling"]["samples"]
        wall = time.perf_counter() - t0
    print(f"CAD stages, method {args.method!r}, size {s['size']}, {args.threads} thread(s), "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'} (wall time incl. loading)")  # fmt: skip
    print(f"{'stage':<20} {'steps':>6} {'wall s':>8} {'steps/s':>8}")
    for name, steps, wall_s, rate in rows:
        print(f"{name:<20} {steps:>6} {wall_s:>8.1f} {rate:>8.2f}")
    print(f"{'reconstruct_cad':<20} {n_img:>6} {wall:>8.1f} {n_img / wall:>8.2f} images/s "
          f"({s['sampling']['sampler']}, {s['sampling']['steps']} steps)")  # fmt: skip


if __name__ == "__main__":
    main()
