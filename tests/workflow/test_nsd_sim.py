"""The NSD path through Snakemake: ``config/nsd-sim.yaml`` builds its DAG, and a smaller copy (one
subject, ``nsdgeneral``, a smaller tree) runs from the simulator through the nsd reader, the
reference decoder, the floor and the oracle to the ``mindeye_offline`` metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fmrirecon.data.prepared import read_images_file, read_subject_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = REPO / "config" / "nsd-sim.yaml"
METHODS = ("ridge", "mean-image", "oracle")

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, configfiles=(CONFIG,)):
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--max-threads", "1", "--configfile", *map(str, configfiles)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def test_the_nsd_config_plans_the_nsd_path_and_not_the_default_dataset(tmp_path):
    planned = snakemake(tmp_path, "-n")
    for rule in ("simulate_dataset", "prepare_images", "mask_roi", "reconstruct_baseline", "evaluate_reconstructions"):
        assert f"rule {rule}:" in planned, rule
    assert "results/simnsd/sub-2/roi-ventral/oracle/metrics-mindeye_offline.json" in planned
    assert "simgod" not in planned and "metrics-gaziv2022" not in planned
    assert "train_decoder" not in planned  # config.yaml's trained methods stay off simnsd


@pytest.fixture(scope="module")
def nsd_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("nsd")
    small = {
        "datasets": [{"name": "simnsd", "format": "simulated", "read_as": "nsd", "subjects": ["1"],
                      "rois": ["nsdgeneral"], "methods": list(METHODS)}],
        "simulation": {"nsd": {"n_shared_images": 12, "images_per_subject": 60, "sessions": 2,
                               "trials_per_session": 60, "runs_per_session": 2},
                       "voxels": {"V1": 60, "V2": 50, "V3": 40, "V4": 30, "LOC": 40, "FFA": 20, "PPA": 20},
                       "subjects": {"1": {"noise_sd": 0.5}}},
        "evaluation": {"bootstrap_samples": 100},
    }  # fmt: skip
    overlay = work / "small.yaml"
    overlay.write_text(yaml.safe_dump(small))
    targets = [f"results/simnsd/sub-1/roi-nsdgeneral/{m}/metrics-mindeye_offline.json" for m in METHODS]
    snakemake(work, *targets, configfiles=(CONFIG, overlay))
    again = snakemake(work, "-n", *targets, configfiles=(CONFIG, overlay))
    return work, again


def test_the_simulated_nsd_tree_goes_through_the_nsd_reader(nsd_run):
    work, again = nsd_run
    raw = work / "results/simnsd/raw"
    assert (raw / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session02.nii.gz").is_file()
    images = read_images_file(work / "results/simnsd/images.h5")
    assert len(images.test) == 12 and len(images.train) == 60  # the shared set; subject 1's own images
    assert images.test.foreground is not None  # the simulation truth travels with the images
    d = read_subject_file(work / "results/simnsd/sub-1/roi-nsdgeneral/data.h5")
    assert d["test/fmri"].shape == (12, 260) and len(d["train/fmri"]) == 120 - 36
    assert "Nothing to be done" in again  # a second run reruns nothing (parameters are stable)


def test_the_generated_tree_plans_as_a_real_nsd_dataset(nsd_run, tmp_path):
    """The same files as ``format: nsd`` (real data): the reader names the session files of the
    configured subjects as inputs, and a ROI the files lack fails at parse time."""
    work, _ = nsd_run
    real = {"name": "realnsd", "format": "nsd", "path": str(work / "results/simnsd/raw"), "subjects": ["1"],
            "rois": ["nsdgeneral", "V1"], "methods": ["ridge"]}  # fmt: skip
    overlay = tmp_path / "real.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": [real]}))
    planned = snakemake(tmp_path, "-n", configfiles=(CONFIG, overlay))
    assert "betas_session02.nii.gz" in planned and "results/realnsd/sub-1/roi-V1/data.h5" in planned
    overlay.write_text(yaml.safe_dump({"datasets": [{**real, "rois": ["LOC"]}]}))
    with pytest.raises(AssertionError, match=r"ROI 'LOC' is neither in .*subj01/func1pt8mm/roi"):
        snakemake(tmp_path, "-n", configfiles=(CONFIG, overlay))


def test_mindeye_metrics_rank_the_oracle_and_the_decoder_above_the_floor(nsd_run):
    work, _ = nsd_run
    unit = work / "results/simnsd/sub-1/roi-nsdgeneral"
    js = {m: json.loads((unit / m / "metrics-mindeye_offline.json").read_text()) for m in METHODS}
    assert js["ridge"]["context"]["protocol"] == "mindeye_offline"
    pix = {m: js[m]["metrics"]["pixcorr"]["value"] for m in METHODS}  # here 0.46, 0.43, 0.06
    assert pix["ridge"] > pix["mean-image"] + 0.2 and pix["oracle"] > pix["mean-image"] + 0.2, pix
    assert pix["oracle"] > pix["ridge"] - 0.05, pix  # low noise: the decoder comes close to its ceiling
    assert js["mean-image"]["metrics"]["effnet_block4_2way"]["value"] == 0.5  # one image for all: chance
