"""CAD pretrains on a pool in another voxel space and fine-tunes on a subject, through Snakemake.

The smoke config with an overlay: a simulated HCP-like pool (two subjects, V1–V4 = 220 voxels, its
own space) is written by rule ``simulate_pool``, prepared by ``prepare_pool`` (MinD-Vis' windows,
padding and z-score), DC-MAE pretrains on it once (``pretrain_fmri_mae_pool``, the smoke config's
tiny budget) and phase 2 (``tune_cross_modal``) fine-tunes it on the smoke subject's VC
(192 voxels), wrap-padded to the pool's 224-voxel grid."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from fmrirecon.train.files import read_hparams

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SMOKE = REPO / "config" / "smoke.yaml"
POOL_VOXELS = {"V1": 80, "V2": 60, "V3": 50, "V4": 30}  # 220 -> 224; the smoke VC has 192

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, configfiles=(SMOKE,)):
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--max-threads", "1", "--configfile", *map(str, configfiles)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def test_cad_pretrains_on_a_pool_in_another_space_and_fine_tunes_on_the_subject(tmp_path):
    overlay = {
        "datasets": [{"name": "simgod", "format": "simulated", "read_as": "god_bdata", "subjects": ["1"],
                      "rois": ["VC"], "methods": ["cad"]}],
        "pools": {"hcpmini": {"format": "simulated", "subjects": ["900001", "900002"], "window_trs": 10,
                              "patch_size": 16, "simulation": {"trs": 200, "voxels": POOL_VOXELS}}},
        "cad": {"fmri_mae": {"pool": "hcpmini"}},
    }  # fmt: skip
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(yaml.safe_dump(overlay))
    target = "results/simgod/sub-1/roi-VC/cad/cad-cross_modal.safetensors"
    snakemake(tmp_path, target, configfiles=(SMOKE, cfg))

    with h5py.File(tmp_path / "results/pools/hcpmini/pool.h5") as h5:
        attrs, pool = dict(h5.attrs), h5["fmri"][()]
    assert pool.shape == (2 * 20, 224) and attrs["n_voxels"] == 220 and attrs["n_voxels_padded"] == 224
    assert json.loads(attrs["voxels_per_roi"]) == POOL_VOXELS and attrs["window_trs"] == 10
    for k in range(2):  # one scalar z-score per subject
        assert abs(pool[20 * k : 20 * (k + 1)].mean()) < 1e-4 and abs(pool[20 * k : 20 * (k + 1)].std() - 1) < 1e-3

    models = list((tmp_path / "results/pools/hcpmini/models").glob("cad-fmri_mae-*.safetensors"))
    assert len(models) == 1
    assert not list((tmp_path / "results/simgod").rglob("cad-fmri_mae-*"))  # no per-subject phase 1
    phase1 = read_hparams(str(models[0]))
    assert phase1["n_voxels"] == 224 and phase1["pool"] == "hcpmini" and phase1["n_samples"] == 40

    with h5py.File(tmp_path / "results/simgod/sub-1/roi-VC/data.h5") as h5:
        n_subject = h5["train/fmri"].shape[1]
    assert n_subject == 192 != attrs["n_voxels"]  # two voxel spaces
    phase2 = read_hparams(str(tmp_path / target))
    assert phase2["stage"] == "cross_modal" and phase2["n_voxels"] == 224  # the pool's grid
    assert phase2["pool"] == "hcpmini" and phase2["subject_voxels"] == 192 and phase2["bridge"] == "wrap_pad_or_truncate"
    for log in (models[0].with_suffix("").with_suffix(".losses.tsv"), tmp_path / target.replace(".safetensors", ".losses.tsv")):
        with open(log) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        assert rows and all(np.isfinite(float(r["loss"])) for r in rows)
