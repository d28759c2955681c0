"""Benchmark: training throughput (samples/s) of every stage of papers 002 / 000 on this machine.

Simulates the embedded default's subject 1 (or uses existing prepared files with --data/--images),
then runs each stage function for one epoch, exactly as the rules do, and prints samples per second
and seconds per epoch. The default config's totals follow from these figures and the epochs in
config/config.yaml (printed at the end).

    .venv/bin/python benchmarks/bench_encdec.py [--roi VC] [--threads 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from fmrirecon.config import method_settings, validate_config  # noqa: E402
from fmrirecon.data.simulation.dataset import simulate_dataset  # noqa: E402
from fmrirecon.data.steps import mask_roi, prepare_images  # noqa: E402
from fmrirecon.methods.encdec import attention, decoder, encoder  # noqa: E402


def _rate(tsv: Path, n: int) -> tuple[float, float]:
    with open(tsv) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    per_epoch = float(rows[0]["wall_s"])
    return n / per_epoch, per_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--roi", default="VC")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data", help="an existing prepared data.h5 (skips the simulation)")
    ap.add_argument("--images", help="the dataset's images.h5 (with --data)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with open(args.config) as fh:
        cfg = validate_config(yaml.safe_load(fh))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, images = args.data, args.images
        if not data:
            raw = tmp / "raw"
            simulate_dataset(cfg["simulation"], cfg["seed"], ["1"], str(raw))
            source = {"reader": "god_bdata", "root": str(raw), "truth": str(raw / "truth.h5"),
                      "dataset": {"unpaired_images": str(raw / "images" / "unpaired")}}  # fmt: skip
            images = str(tmp / "images.h5")
            prepare_images(source, cfg["image_size"], images, "bench")
            src = {"reader": "god_bdata", "truth": str(raw / "truth.h5"),
                   "files": {"subject": str(raw / "Subject1.h5"), "unlabeled": str(raw / "Subject1_unlabeled.h5")}}
            data = str(tmp / "data.h5")
            mask_roi(src, images, "1", args.roi, cfg["rois"], "run", "metadata", data, "sim", "bench")
        from fmrirecon.data.prepared import read_subject_file

        d = read_subject_file(data)
        n_train, n_vox = d["train/fmri"].shape
        print(f"data: {n_train} training samples x {n_vox} voxels ({args.roi}), {args.threads} threads")
        results = {}
        t = time.perf_counter()
        attention.make_label_maps(images, cfg["label_maps"], str(tmp / "maps.h5"), str(tmp / "maps.json"))
        results["make_label_maps"] = (float("nan"), time.perf_counter() - t)
        enc_cfg = copy.deepcopy(cfg["encoder"])
        enc_cfg["train"]["epochs"] = args.epochs
        for shift in sorted({enc_cfg["max_shift"], 2}):
            enc_cfg["max_shift"] = shift
            encoder.pretrain_encoder(data, images, enc_cfg, cfg["training"], 0, str(tmp / "ck"), str(tmp / "enc.safetensors"),
                                   str(tmp / "enc.tsv"), str(tmp / "acc.tsv"))  # fmt: skip
            results[f"pretrain_encoder (max_shift {shift})"] = _rate(tmp / "enc.tsv", n_train)
        att_cfg = copy.deepcopy(cfg["attention_decoder"])
        att_cfg["train"]["epochs"] = args.epochs
        attention.train_attention_decoder(data, images, str(tmp / "maps.h5"), att_cfg, cfg["training"], 0, str(tmp / "ck"),
                                      str(tmp / "att.safetensors"), str(tmp / "att.tsv"), str(tmp / "att.json"))  # fmt: skip
        results["train_attention_decoder"] = _rate(tmp / "att.tsv", n_train)
        for method in [m for m, s in cfg["methods"].items() if s["family"] in ("ssl", "loopencdec")]:
            settings = method_settings(cfg, method)
            settings["train"]["epochs"] = args.epochs
            family = cfg["methods"][method]["family"]
            decoder.train_decoder(method, family, data, images, str(tmp / "enc.safetensors"), str(tmp / "att.safetensors"),
                                settings, cfg["training"], 0, str(tmp / "ck"), str(tmp / "dec.safetensors"),
                                str(tmp / "dec.tsv"))  # fmt: skip
            results[f"train_decoder [{method}]"] = _rate(tmp / "dec.tsv", n_train)
    print(f"{'stage':42s} {'samples/s':>10s} {'s/epoch':>9s}")
    for name, (rate, sec) in results.items():
        print(f"{name:42s} {rate:10.1f} {sec:9.1f}")
    ep = {k: cfg[k]["train"]["epochs"] for k in ("encoder", "attention_decoder", "ssl", "loopencdec")}
    print(f"epochs in {Path(args.config).name}: {ep}")


if __name__ == "__main__":
    main()
