"""The simulator's NSD design (``simulation.design: nsd``): a tiny tree in NSD's AWS layout.

Checked through the real nsd reader and independently from the published files (design .mat,
stim-info CSV, ROI volumes): layout, the shared test set every subject sees, repeats, determinism,
truth aligned with the reader's voxels, and fMRI that carries image information.
"""

from __future__ import annotations

import copy
import hashlib
import json

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io
from fmrirecon.config import validate_config
from fmrirecon.data import steps
from fmrirecon.data.readers import TEST, TRAIN, get_reader
from fmrirecon.data.simulation import design_settings, generated_dataset, nsd_design
from fmrirecon.data.simulation.dataset import simulate_dataset
from fmrirecon.errors import InputError

SIZE = 32
SUBJECTS = ["1", "2"]
SIM = {
    "design": "nsd",
    "image_size": SIZE,
    "nsd": {"n_shared_images": 10, "shared_repeats": 3, "images_per_subject": 40, "sessions": 2,
            "trials_per_session": 50, "runs_per_session": 2, "n_categories": 12},
    "voxels": {"V1": 40, "V2": 30, "V3": 30, "V4": 20, "LOC": 20, "FFA": 12, "PPA": 12},
    "subjects": {"1": {"noise_sd": 0.5}, "2": {"noise_sd": 1.0}},
}  # fmt: skip
DATASET = {"name": "simnsd", "format": "simulated", "read_as": "nsd", "subjects": SUBJECTS, "rois": ["nsdgeneral"]}


def _config(sim=SIM, dataset=DATASET) -> dict:
    return validate_config({"simulation": copy.deepcopy(sim), "datasets": [copy.deepcopy(dataset)],
                            "methods": {"ridge": {"family": "ridge", "target_size": 8}}})  # fmt: skip


def _simulate(out, seed=3):
    cfg = _config()
    sim = design_settings(cfg["simulation"])
    simulate_dataset(sim, seed, SUBJECTS, out)
    return generated_dataset(cfg["datasets"][0], str(out), sim)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("simnsd") / "raw"
    ds = _simulate(root)
    reader = get_reader("nsd")
    stimuli = reader.read_stimuli(ds, str(root), SIZE)
    recs = {s: reader.read_subject(reader.subject_inputs(ds, str(root), s), stimuli) for s in SUBJECTS}
    return root, ds, stimuli, recs


def _digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_the_tree_has_nsds_published_layout(tree):
    root, *_ = tree
    design = scipy.io.loadmat(root / "nsddata/experiments/nsd/nsd_expdesign.mat")
    assert design["masterordering"].shape == (1, 100) and design["subjectim"].shape == (2, 50)
    assert design["sharedix"].shape == (1, 10) and design["stimpattern"].ndim == 3
    with h5py.File(root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", "r") as f:
        assert f["imgBrick"].shape == (90, SIZE, SIZE, 3) and f["imgBrick"].dtype == np.uint8
    for n in (1, 2):
        betas = root / f"nsddata_betas/ppdata/subj{n:02d}/func1pt8mm/betas_fithrf_GLMdenoise_RR"
        img = nib.load(betas / "betas_session02.nii.gz")
        assert img.get_data_dtype() == np.int16 and img.shape[3] == 50
        roi = root / f"nsddata/ppdata/subj{n:02d}/func1pt8mm/roi"
        for atlas in nsd_design.ATLASES:
            labels = np.asarray(nib.load(roi / f"{atlas}.nii.gz").dataobj)
            assert labels.shape == img.shape[:3] and labels.min() == -1 and labels.max() >= 1
            assert (root / f"nsddata/freesurfer/subj{n:02d}/label/{atlas}.mgz.ctab").is_file()
        prf = np.asarray(nib.load(roi / "prf-visualrois.nii.gz").dataobj)
        assert set(np.unique(prf)) == {-1, 0, 1, 2, 3, 4, 5, 6, 7}  # V1v..hV4, 0 = higher areas
        # betas are zero outside the simulated voxels (the -1 of the atlases)
        general = np.asarray(nib.load(roi / "nsdgeneral.nii.gz").dataobj)
        assert not np.asarray(img.dataobj)[general < 0].any()
        behav = pd.read_csv(root / f"nsddata/ppdata/subj{n:02d}/behav/responses.tsv", sep="\t")
        assert len(behav) == 100 and sorted(behav["RUN"].unique()) == [1, 2]
    info = pd.read_csv(root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv")
    assert {"nsdId", "shared1000", "subject1_rep2", "subject2_rep0"} <= set(info.columns)


def test_every_subject_sees_the_shared_test_set_three_times_and_its_own_images_one_to_three(tree):
    root, _, stimuli, recs = tree
    info = pd.read_csv(root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv")
    shared = info.loc[info["shared1000"], "nsdId"].to_numpy()
    assert len(shared) == 10 and np.array_equal(stimuli.test.stimulus_id, np.sort(shared))
    own = {}
    for s, rec in recs.items():
        counts = (info[[f"subject{s}_rep{r}" for r in range(3)]] > 0).sum(axis=1).to_numpy()
        assert (counts[shared] == 3).all()
        own[s] = info.loc[(info[f"subject{s}"] == 1) & ~info["shared1000"], "nsdId"].to_numpy()
        assert len(own[s]) == 40 and ((counts[own[s]] >= 1) & (counts[own[s]] <= 3)).all()
        test = rec.image_index[rec.datatype == TEST]
        assert np.array_equal(np.bincount(test, minlength=10), np.full(10, 3))
        seen = stimuli.train.stimulus_id[np.unique(rec.image_index[rec.datatype == TRAIN])]
        assert np.array_equal(np.sort(seen), np.sort(own[s]))
        assert sorted(set(rec.run.tolist())) == [1, 2]  # sessions, for per-session z-scoring
    assert not set(own["1"]) & set(own["2"])  # subject-specific training images
    assert len(stimuli.train) == 80


def test_the_same_seed_gives_the_same_bytes(tree, tmp_path):
    root, *_ = tree
    _simulate(tmp_path / "again")
    assert _digests(tmp_path / "again") == _digests(root)


def _session_z(rec):
    x = rec.fmri.astype(np.float64).copy()
    for r in np.unique(rec.run):
        m = rec.run == r
        x[m] = (x[m] - x[m].mean(0)) / x[m].std(0)
    return x


def _test_averages(rec, x):
    idx = rec.image_index[rec.datatype == TEST]
    return np.stack([x[rec.datatype == TEST][idx == i].mean(0) for i in range(idx.max() + 1)])


def test_truth_follows_the_readers_voxels_and_test_rows(tree):
    root, _, _, recs = tree
    with h5py.File(root / "truth.h5", "r") as f:
        for s, rec in recs.items():
            truth = f[f"sub-{s}/signal_test"][()]
            assert truth.shape == (10, rec.n_voxels) and f[f"sub-{s}/signal_train"].shape == (80, rec.n_voxels)
            avg = _test_averages(rec, _session_z(rec))
            r = [np.corrcoef(avg[:, v], truth[:, v])[0, 1] for v in range(rec.n_voxels)]
            assert np.median(r) > 0.6, s  # the same voxel in both: its signal shows through the noise
            roi = f[f"sub-{s}/roi"][()].astype(str)
            assert (rec.rois["V1"] == (roi == "V1")).all() and (rec.rois["PPA"] == (roi == "PPA")).all()
            assert (rec.rois["nsdgeneral"]).all() and rec.noise_ceiling is not None


def test_the_fmri_identifies_the_test_images_through_a_ridge_decoder(tree):
    """Ridge from single training trials (40 images) to 4×4 RGB pixels, applied to the test
    averages: 2-way identification above chance (0.5) for both subjects (0.8 and 0.68 here)."""
    _, _, stimuli, recs = tree

    def pixels(images):
        x = images.reshape(len(images), 4, SIZE // 4, 4, SIZE // 4, 3).mean((2, 4)) / 255.0
        return x.reshape(len(x), -1)

    for s, rec in recs.items():
        x = _session_z(rec)
        train = rec.datatype == TRAIN
        xtr, ytr = x[train], pixels(stimuli.train.images[rec.image_index[train]])
        mu_x, mu_y = xtr.mean(0), ytr.mean(0)
        a = xtr - mu_x
        w = np.linalg.solve(a.T @ a + 0.1 * len(a) * np.eye(a.shape[1]), a.T @ (ytr - mu_y))
        pred = (_test_averages(rec, x) - mu_x) @ w + mu_y
        truth = pixels(stimuli.test.images)
        c = np.corrcoef(pred, truth)[:10, 10:]
        ident = np.mean([(c[i, i] > np.delete(c[i], i)).mean() for i in range(10)])
        assert ident > 0.6, (s, ident)


def test_multi_object_images_come_with_true_boxes_and_captions(tree):
    root, _, stimuli, _ = tree
    folder = root / "nsddata_stimuli/stimuli/nsd/annotations"
    instances = json.loads((folder / "instances_train2017.json").read_text())
    captions = json.loads((folder / "captions_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in instances["categories"]}
    per_image = {}
    for a in instances["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
    assert len(per_image) == 90 and {len(v) for v in per_image.values()} == {1, 2, 3}  # main + 0-2 distractors
    with h5py.File(root / "truth.h5", "r") as f:
        fg = f["images/test/foreground"][()]
    for row, nsd_id in enumerate(stimuli.test.stimulus_id.astype(int).tolist()):
        ys, xs = np.nonzero(fg[row])
        main = per_image[nsd_id][0]  # the main object first: its box is the foreground's
        assert main["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        text = [c["caption"] for c in captions["annotations"] if c["image_id"] == nsd_id]
        assert text and all(t.startswith("a " + names[main["category_id"]]) for t in text)
        for other in per_image[nsd_id][1:]:
            assert f"a small {names[other['category_id']]}" in text[0]


def test_prepare_images_attaches_the_true_foreground_and_categories(tree):
    root, ds, stimuli, _ = tree
    source = {"reader": "nsd", "root": str(root), "dataset": ds, "gallery_images": "", "truth": str(root / "truth.h5")}
    loaded = steps.load_stimuli(source, SIZE)
    assert loaded.test.foreground.shape == (10, SIZE, SIZE) and loaded.train.foreground.any()
    assert (loaded.train.category >= 0).all() and (stimuli.train.category == -1).all()  # the reader has none


def test_the_algonauts_twin_is_read_by_the_algonauts_reader(tree):
    root, _, stimuli, recs = tree
    algo = root / "algonauts2023"
    entry = {"name": "algo", "format": "algonauts2023", "path": str(algo), "subjects": SUBJECTS, "rois": ["V1"],
             "roi_source": "metadata", "unlabeled_fmri": "", "unpaired_images": "", "gallery_images": "",
             "options": {"labels_csv": "image_infos/{subject}_infos_train.csv"}}  # fmt: skip
    reader = get_reader("algonauts2023")
    reader.check(entry, "datasets[0]")
    images = reader.read_stimuli(entry, str(algo), SIZE)
    # the test images are the shared images both subjects saw: NSD's shared set
    assert set(images.test.stimulus_id.astype(int)) <= set(stimuli.test.stimulus_id.astype(int))
    assert len(images.train) + len(images.test) == 90
    for s in SUBJECTS:
        rec = reader.read_subject(reader.subject_inputs(entry, str(algo), s), images)
        assert rec.fmri.shape == (50, recs[s].n_voxels) and rec.prenormalized  # 40 own + 10 shared images
        assert rec.rois["V1"].sum() == recs[s].rois["V1"].sum()


def test_config_checks_tie_the_design_to_its_reader():
    assert _config()["simulation"]["design"] == "nsd"
    with pytest.raises(InputError, match=r"datasets\[0\].read_as: simulation.design nsd writes the nsd layout"):
        _config(dataset={**DATASET, "read_as": "god_bdata"})
    with pytest.raises(InputError, match=r"set simulation.design: nsd"):
        _config(sim={k: v for k, v in SIM.items() if k not in ("design", "nsd")}, dataset=DATASET)
    with pytest.raises(InputError, match=r"simulation.nsd: 2 sessions × 20 trials"):
        _config(sim={**SIM, "nsd": {**SIM["nsd"], "trials_per_session": 20}})
    with pytest.raises(InputError, match=r"datasets\[0\].options: \['sessions'\] are set by the simulator"):
        _config(dataset={**DATASET, "options": {"sessions": "1-1"}})
    with pytest.raises(InputError, match=r"not simulated"):
        _config(dataset={**DATASET, "rois": ["LOC"]})  # the NSD atlases have no LOC label
    cfg = _config(dataset={**DATASET, "rois": ["V1", "FFA1", "ventral", "flocfacesFFA2"]})
    assert cfg["datasets"][0]["rois"] == ["V1", "FFA1", "ventral", "flocfacesFFA2"]


def test_the_god_design_settings_do_not_see_the_nsd_keys():
    """Adding the NSD design changes no parameter or hash of the default GOD-like simulation."""
    sim = validate_config({})["simulation"]
    assert "design" not in design_settings(sim) and "nsd" not in design_settings(sim)
    nsd_sim = design_settings(_config()["simulation"])
    assert nsd_sim["design"] == "nsd" and "nsd" in nsd_sim
