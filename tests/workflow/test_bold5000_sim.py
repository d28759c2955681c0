"""The BOLD5000 path through Snakemake: ``config/bold5000-sim.yaml`` builds its DAG, and a smaller copy
(one subject, VC, a smaller simulation) runs from the simulator through the BOLD5000 tree, the bold5000
reader, the reference decoder and the floor to MinD-Vis' ``mindvis_nway`` metrics and the data card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fmrirecon.data.prepared import read_images_file, read_subject_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = REPO / "config" / "bold5000-sim.yaml"
METHODS = ("ridge", "mean-image")
VOXELS = {"V1": 90, "V2": 80, "V3": 70, "V4": 16, "LOC": 20, "FFA": 12, "PPA": 16, "OPA": 14, "RSC": 10}
N_TRAIN, N_TEST, REPEATS = 20 * 6, 20, 3

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, configfiles=(CONFIG,)):
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--max-threads", "1", "--configfile", *map(str, configfiles)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def test_the_bold5000_config_plans_the_bold5000_path_without_the_oracle(tmp_path):
    planned = snakemake(tmp_path, "-n")
    assert "results/simb5k/sub-2/roi-PPA/ridge/metrics-mindvis_nway.json" in planned
    assert "results/simb5k/sub-1/roi-VC/ssl/metrics-mindvis_nway.json" in planned
    assert "results/simb5k/sub-1/roi-VC/loopencdec/recon.h5" in planned
    assert "results/report/data_cards/simb5k.csv" in planned
    assert "/oracle/" not in planned and "simgod" not in planned and "sub-2/roi-VC/ssl/" not in planned


@pytest.fixture(scope="module")
def b5k_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("b5k")
    small = {
        "datasets": [{"name": "simb5k", "format": "simulated", "read_as": "bold5000", "subjects": ["1"],
                      "rois": ["VC"], "methods": list(METHODS)}],
        "simulation": {"n_train_categories": 20, "n_test_categories": N_TEST, "images_per_category": 6,
                       "test_repeats": REPEATS, "trials_per_run": 12, "n_unpaired_images": 8, "n_unlabeled_fmri": 12,
                       "gallery_per_category": 1, "voxels": VOXELS, "subjects": {"1": {"noise_sd": 0.3}}},
        "evaluation": {"bootstrap_samples": 100},
    }  # fmt: skip
    overlay = work / "small.yaml"
    overlay.write_text(yaml.safe_dump(small))
    targets = [f"results/simb5k/sub-1/roi-VC/{m}/metrics-mindvis_nway.json" for m in METHODS]
    targets.append("results/report/data_cards/simb5k.csv")
    snakemake(work, *targets, configfiles=(CONFIG, overlay))
    return work


def test_the_simulated_bold5000_tree_goes_through_the_bold5000_reader(b5k_run):
    work = b5k_run
    raw = work / "results/simb5k/raw/bold5000"
    py = raw / "BOLD5000_GLMsingle_ROI_betas/py"
    assert (py / "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_RHRSC.npy").is_file()
    assert len((raw / "BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt").read_text().split()) == N_TEST
    images = read_images_file(work / "results/simb5k/images.h5")
    assert (len(images.test), len(images.train)) == (N_TEST, N_TRAIN)
    assert images.test.foreground is not None  # the simulation truth travels with the images, by name
    d = read_subject_file(work / "results/simb5k/sub-1/roi-VC/data.h5")
    n_vox = sum(n for r, n in VOXELS.items() if r not in ("V4", "FFA"))  # EarlyVis = V1-V3; FFA in no file
    assert d["test/fmri"].shape == (N_TEST, n_vox) and d["test/fmri_trials"].shape == (N_TEST * REPEATS, n_vox)
    assert len(d["train/fmri"]) == N_TRAIN and "noise_ceiling" not in d.groups["voxels"]
    names = d["voxels/roi_names"].astype(str).tolist()
    assert names[:2] == ["LHEarlyVis", "RHEarlyVis"] and len(names) == 10
    # the test average is the mean of the image's normalised trials (mask_roi averages the repeats)
    trials, index = d["test/fmri_trials"], d["test/trial_image_index"]
    for row, image in enumerate(d["test/image_index"]):
        np.testing.assert_allclose(d["test/fmri"][row], trials[index == image].mean(0), atol=1e-5)


def test_ridge_beats_the_floor_on_mindvis_metrics_and_the_card_says_bold5000(b5k_run):
    import pandas as pd

    work = b5k_run
    unit = work / "results/simb5k/sub-1/roi-VC"
    js = {m: json.loads((unit / m / "metrics-mindvis_nway.json").read_text()) for m in METHODS}
    pcc = {m: js[m]["metrics"]["pairwise_pcc"]["value"] for m in METHODS}
    assert js["mean-image"]["metrics"]["pairwise_pcc"]["value"] == pytest.approx(0.5, abs=0.05)  # one image: chance
    assert pcc["ridge"] > pcc["mean-image"] + 0.08, pcc  # here 0.61 vs 0.50: misaligned rows would give ~0.5
    card = pd.read_csv(work / "results/report/data_cards/simb5k.csv", dtype={"subject": str})
    row = card.iloc[0].to_dict()
    assert (row["format"], row["test_images"], row["test_trials"]) == ("bold5000", N_TEST, N_TEST * REPEATS)
