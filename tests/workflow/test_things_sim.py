"""The THINGS-fMRI path through Snakemake: ``config/things-sim.yaml`` builds its DAG, and a smaller
copy (one subject, ``VC``, a small design) runs from the simulator through the things_fmri reader
to the reference decoder's and the floor's ``report003`` metrics. The prepared fMRI must equal what
the GOD reader makes of the same experiment's BData file: the two layouts hold the same numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from fmrirecon.data import masking
from fmrirecon.data.bdata import BDataFile
from fmrirecon.data.prepared import read_images_file, read_subject_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = REPO / "config" / "things-sim.yaml"
METHODS = ("ridge", "mean-image")

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, configfiles=(CONFIG,)):
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--max-threads", "1", "--configfile", *map(str, configfiles)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def test_the_things_config_plans_the_things_path(tmp_path):
    planned = snakemake(tmp_path, "-n")
    assert "results/simthings/sub-2/roi-FFA/ridge/metrics-report003.json" in planned
    assert "results/simthings/sub-1/roi-VC/oracle/metrics-report003.json" in planned  # the truth lines up
    assert "simgod" not in planned and "results/report/data_cards/simthings.csv" in planned


@pytest.fixture(scope="module")
def things_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("things")
    small = {
        "datasets": [{"name": "simthings", "format": "simulated", "read_as": "things_fmri", "subjects": ["1"],
                      "rois": ["VC"], "methods": list(METHODS)}],
        "simulation": {"n_train_categories": 20, "n_test_categories": 10, "images_per_category": 3,
                       "n_unpaired_images": 10, "n_unlabeled_fmri": 10, "trials_per_run": 30,
                       "voxels": {"V1": 40, "V2": 30, "V3": 30, "V4": 20, "LOC": 30, "FFA": 20, "PPA": 20},
                       "subjects": {"1": {"noise_sd": 0.5}}},
        "evaluation": {"bootstrap_samples": 100},
    }  # fmt: skip
    overlay = work / "small.yaml"
    overlay.write_text(yaml.safe_dump(small))
    targets = [f"results/simthings/sub-1/roi-VC/{m}/metrics-report003.json" for m in METHODS]
    snakemake(work, *targets, configfiles=(CONFIG, overlay))
    again = snakemake(work, "-n", *targets, configfiles=(CONFIG, overlay))
    return work, again


def test_the_simulated_things_tree_goes_through_the_things_reader(things_run):
    work, again = things_run
    raw = work / "results/simthings/raw"
    betas = raw / "things_fmri/betas_csv"
    with h5py.File(betas / "sub-01_ResponseData.h5", "r") as f:  # pandas' fixed store, column index pickled
        assert f["ResponseData"].attrs["pandas_type"] == b"frame" and h5py.check_vlen_dtype(f["ResponseData/axis0"].dtype)
    header = (betas / "sub-01_VoxelMetadata.csv").read_text().splitlines()[0].split(",")
    assert {"voxel_id", "voxel_x", "nc_testset", "hV4", "lFFA", "rPPA", "LO1 (prf)", "IT"} <= set(header)
    data = read_subject_file(work / "results/simthings/sub-1/roi-VC/data.h5")
    images = read_images_file(work / "results/simthings/images.h5", with_images=False)
    assert len(images.train) == 60 and len(images.test) == 10 and data["test/fmri"].shape == (10, 190)
    # the same experiment's GOD BData file, normalised per run and averaged per test image here
    bd = BDataFile.open(raw / "Subject1.h5")
    x, dt, run = bd.select("VoxelData"), bd.select("DataType")[:, 0], bd.select("Run")[:, 0]
    row = bd.select("image_index")[:, 0].astype(int) - 1  # 1-based rows of GOD's image lists
    z = masking.normalise(x.astype(np.float32), run, dt == 1, "run")
    test = np.stack([z[(dt == 2) & (row == i)].mean(0) for i in range(10)])
    assert np.array_equal(images.train.names, np.array(sorted(images.train.names)))  # = GOD's list order
    assert np.allclose(data["test/fmri"], test, atol=1e-4)
    assert np.allclose(data["train/fmri"], z[dt == 1], atol=1e-4)
    assert np.array_equal(data["train/image_index"], row[dt == 1])
    for m in METHODS:
        metrics = json.loads((work / f"results/simthings/sub-1/roi-VC/{m}/metrics-report003.json").read_text())
        assert metrics["n"] == 10 and np.isfinite(metrics["metrics"]["pcc"]["value"]), m
    assert "Nothing to be done" in again
