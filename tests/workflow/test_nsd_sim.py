"""The NSD path through Snakemake: ``config/nsd-sim.yaml`` builds its DAG, and a smaller copy (one
subject, ``nsdgeneral``, a smaller tree, the smoke config's training budgets) runs from the
simulator through the nsd reader, the reference decoder, the floor, the oracle and a trained method
(paper 002's ``ssl``) to the ``mindeye_offline`` metrics and the data card."""

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
#: a trained method through the NSD path: ssl, whose E-D term is off for want of an unpaired pool on
#: NSD. The families are format-blind after mask_roi (test_plugins), so loopencdec and cad are run
#: end to end on the smoke config (and on this config by the full nsd-sim.yaml run, README), not here.
TRAINED = ("ssl",)
#: config/smoke.yaml's training budgets: every code path, not a converged model
BUDGETS = {k: v for k, v in yaml.safe_load((REPO / "config" / "smoke.yaml").read_text()).items()
           if k in ("encoder", "attention_decoder", "ssl", "loopencdec", "cad")}  # fmt: skip

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
    # the trained methods and their ablations run on nsdgeneral (ablations on subject 1 only)
    for method in ("ssl", "loopencdec", "cad", "ssl-supervised", "loopencdec-nofa-noloop", "cad-noimgloss"):
        assert f"results/simnsd/sub-1/roi-nsdgeneral/{method}/metrics-mindeye_offline.json" in planned, method
    assert "results/simnsd/sub-2/roi-nsdgeneral/cad/recon.h5" in planned
    assert "sub-2/roi-nsdgeneral/ssl-supervised" not in planned and "roi-early/ssl/" not in planned
    assert "results/report/data_cards/simnsd.csv" in planned


@pytest.fixture(scope="module")
def nsd_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("nsd")
    small = {
        "datasets": [{"name": "simnsd", "format": "simulated", "read_as": "nsd", "subjects": ["1"],
                      "rois": ["nsdgeneral"], "methods": [*METHODS, *TRAINED]},
                     {"name": "simalgo", "format": "simulated", "read_as": "algonauts2023", "subjects": ["1"],
                      "rois": ["all"], "methods": ["ridge", "mean-image"]}],
        "simulation": {"nsd": {"n_shared_images": 12, "images_per_subject": 60, "sessions": 2,
                               "trials_per_session": 60, "runs_per_session": 2},
                       "voxels": {"V1": 60, "V2": 50, "V3": 40, "V4": 30, "LOC": 40, "FFA": 20, "PPA": 20},
                       "subjects": {"1": {"noise_sd": 0.5}}},
        "evaluation": {"bootstrap_samples": 100},
        **BUDGETS,
    }  # fmt: skip
    overlay = work / "small.yaml"
    overlay.write_text(yaml.safe_dump(small))
    targets = [f"results/simnsd/sub-1/roi-nsdgeneral/{m}/metrics-mindeye_offline.json" for m in METHODS + TRAINED]
    targets += [f"results/simalgo/sub-1/roi-all/{m}/metrics-mindeye_offline.json" for m in ("ridge", "mean-image")]
    targets.append("results/report/data_cards/simnsd.csv")
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
    """The same files as ``format: nsd`` and ``format: algonauts2023`` (real data): the readers name
    the files of the configured subjects as inputs, and a ROI the files lack fails at parse time."""
    work, _ = nsd_run
    real = {"name": "realnsd", "format": "nsd", "path": str(work / "results/simnsd/raw"), "subjects": ["1"],
            "rois": ["nsdgeneral", "V1"], "methods": ["ridge"]}  # fmt: skip
    algo = {"name": "realalgo", "format": "algonauts2023", "path": str(work / "results/simalgo/raw/algonauts2023"),
            "subjects": ["1"], "rois": ["all", "V1"], "methods": ["ridge"]}  # fmt: skip
    overlay = tmp_path / "real.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": [real, algo]}))
    planned = snakemake(tmp_path, "-n", configfiles=(CONFIG, overlay))
    assert "betas_session02.nii.gz" in planned and "results/realnsd/sub-1/roi-V1/data.h5" in planned
    assert "lh_training_fmri.npy" in planned and "results/realalgo/sub-1/roi-V1/data.h5" in planned
    overlay.write_text(yaml.safe_dump({"datasets": [{**real, "rois": ["LOC"]}, algo]}))
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


def test_the_trained_methods_run_on_nsd_and_the_data_card_says_what_was_read(nsd_run):
    """A trained method goes through the NSD path (smoke budgets: no claim about its quality here),
    and the data card gives the splits, repeats, voxels and sessions of the run."""
    import pandas as pd

    work, _ = nsd_run
    unit = work / "results/simnsd/sub-1/roi-nsdgeneral"
    for method, family in zip(TRAINED, ("ssl",), strict=True):
        js = json.loads((unit / method / "metrics-mindeye_offline.json").read_text())
        assert js["context"]["protocol"] == "mindeye_offline" and js["context"]["family"] == family, method
        assert 0 <= js["metrics"]["effnet_block4_2way"]["value"] <= 1
    card = pd.read_csv(work / "results/report/data_cards/simnsd.csv", dtype={"subject": str})
    row = card.iloc[0].to_dict()
    assert len(card) == 1 and (row["subject"], row["roi"], row["format"]) == ("1", "nsdgeneral", "nsd")
    # 2 sessions × 60 trials; 12 shared images × 3 repeats are the test trials, the rest train
    assert (row["test_images"], row["test_trials"], row["test_repeats_min"], row["test_repeats_max"]) == (12, 36, 3, 3)
    assert (row["train_samples"], row["train_images"], row["n_voxels"]) == (120 - 36, 60, 260)
    assert row["sessions"] == "1-2" and row["beta_version"] == "betas_fithrf_GLMdenoise_RR"


def test_the_algonauts_twin_goes_through_the_algonauts_reader(nsd_run):
    """The same simulated experiment in the challenge's layout: an 8:2 split of subject 1's images
    (a group of one), the true foreground found by NSD id, the decoder above the floor."""
    work, _ = nsd_run
    assert (work / "results/simalgo/raw/algonauts2023/subj01/training_split/training_fmri/lh_training_fmri.npy").is_file()
    images = read_images_file(work / "results/simalgo/images.h5")
    assert (len(images.test), len(images.train)) == (round(0.2 * 72), 72 - round(0.2 * 72))  # 12 shared + 60 own
    import h5py
    import numpy as np

    with h5py.File(work / "results/simalgo/raw/truth.h5", "r") as f:
        truth = {int(n[3:]): fg for sp in ("train", "test")
                 for n, fg in zip(f[f"images/{sp}/names"][()].astype(str), f[f"images/{sp}/foreground"][()])}  # fmt: skip
    for split in (images.train, images.test):
        assert np.array_equal(split.foreground, np.stack([truth[int(i)] for i in split.stimulus_id]))
    d = read_subject_file(work / "results/simalgo/sub-1/roi-all/data.h5")
    assert d["test/fmri"].shape == (len(images.test), 260) and d.attrs["normalization"] == "none"  # pre-normalised
    js = {m: json.loads((work / f"results/simalgo/sub-1/roi-all/{m}/metrics-mindeye_offline.json").read_text())
          for m in ("ridge", "mean-image")}  # fmt: skip
    # rows line up with the NSD reading of the same experiment: a test image both share has the same
    # per-session z-scored average of the same trials, its columns in another order (vertices, lh then rh)
    nsd_images = read_images_file(work / "results/simnsd/images.h5", with_images=False)
    nsd_data = read_subject_file(work / "results/simnsd/sub-1/roi-nsdgeneral/data.h5")
    nsd_row = {int(i): r for r, i in enumerate(nsd_images.test.stimulus_id)}
    both = [(r, nsd_row[int(i)]) for r, i in enumerate(images.test.stimulus_id) if int(i) in nsd_row]
    assert both  # the 8:2 split of a group of one draws from all of subject 1's images, shared ones too
    for a, b in both:
        np.testing.assert_allclose(np.sort(d["test/fmri"][a]), np.sort(nsd_data["test/fmri"][b]), atol=1e-4)
    pix = {m: j["metrics"]["pixcorr"]["value"] for m, j in js.items()}
    # here 0.13 against 0.01: 58 averaged training images, test images with 1-3 trials each
    assert pix["ridge"] > pix["mean-image"] + 0.08, pix
