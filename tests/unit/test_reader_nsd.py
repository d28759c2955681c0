"""NSD reader on tiny trees written in NSD's published AWS layout (``write_nsd_tree``).

The tree: 2 subjects on a 6×7×5 grid, 12 trials per session, 40 images of 16 px. Subject 1 has 3
sessions as .nii.gz and .hdf5, subject 2 has 2 sessions as .hdf5 only; shared image 38 (73KID, column 6)
is shown only in session 3, which subject 2 never did. Expectations are computed independently:
trial → image from the stim-info CSV's ``subjectK_repR`` columns, betas from the arrays written.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from fmrirecon.config import _check_file_rois
from fmrirecon.data import masking, prepared, steps
from fmrirecon.data.readers import READERS, nsd
from fmrirecon.data.readers.images import square_resize
from fmrirecon.data.simulation.nsd_layout import write_betas_session, write_nsd_tree
from fmrirecon.errors import InputError
from PIL import Image

GRID = (6, 7, 5)
T = 12
SIZE = 8
N_IMAGES = 40
SHARED = [5, 9, 14, 21, 30, 38]  # 1-based 73k ids = subjectim columns 1..6
OWN = {1: [1, 2, 3, 4, 6, 7, 8, 10], 2: [11, 12, 13, 15, 16, 17, 18, 19]}  # columns 7..14
SESSIONS = [  # subjectim columns shown per session; column 6 only in session 3
    [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13],
    [1, 2, 3, 7, 8, 9, 10, 14, 4, 12, 13, 11],
    [6, 6, 1, 5, 14, 14, 8, 9, 10, 2, 3, 7],
]
N_SESSIONS = {1: 3, 2: 2}
ONLY_S3 = SHARED[5]  # 73KID of column 6: seen by subject 1 only
ROI_NAMES = {a: dict(enumerate(names, 1)) for a, names in nsd.PRIMARY.items()}
ROI_NAMES["Kastner2015"] = {1: "V1v", 2: "V1d", 3: "V2v", 4: "V3A"}
ATLASES = ("nsdgeneral", "prf-visualrois", "streams", "floc-faces", "Kastner2015")


def _design():
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(s) for s in SESSIONS])
    subjectim = np.array([SHARED + OWN[1], SHARED + OWN[2]])
    return order, subjectim


def _betas(k):
    rng = np.random.default_rng(10 + k)
    return rng.integers(-900, 900, (N_SESSIONS[k] * T, *GRID)).astype(np.int16)


def _rois(k):
    rng = np.random.default_rng(20 + k)
    out = {}
    for atlas in ATLASES:
        vol = rng.integers(0, len(ROI_NAMES[atlas]) + 1, GRID)
        vol[0] = -1  # outside the cortical ribbon
        out[atlas] = vol
    return out


def _write(root, **kw):
    order, subjectim = _design()
    rng = np.random.default_rng(1)
    args = {
        "images": rng.integers(0, 256, (N_IMAGES, 16, 16, 3), dtype=np.uint8), "subjectim": subjectim,
        "masterordering": order, "sharedix": np.array(SHARED), "trials_per_session": T,
        "betas": {1: _betas(1), 2: _betas(2)}, "rois": {1: _rois(1), 2: _rois(2)}, "roi_names": ROI_NAMES,
        "betas_format": {1: ("nii.gz", "hdf5"), 2: "hdf5"}, "runs_per_session": 2,
        "ncsnr": {1: np.random.default_rng(3).random(GRID) + 0.1},
    }  # fmt: skip
    args.update(kw)
    write_nsd_tree(root, **args)
    return args


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd")
    return root, _write(root)


def _copy(tree, tmp_path):
    root = tmp_path / "nsd"
    shutil.copytree(tree[0], root)
    return root


def _dataset(root, subjects=("1", "2"), rois=("nsdgeneral",), **options):
    return {"name": "nsd", "format": "nsd", "path": str(root), "subjects": list(subjects), "rois": list(rois),
            "options": options, "normalization": "run", "roi_source": "metadata", "unlabeled_fmri": "",
            "unpaired_images": "", "gallery_images": ""}  # fmt: skip


@pytest.fixture(scope="module")
def stimuli(tree):
    return nsd.read_stimuli(_dataset(tree[0]), str(tree[0]), SIZE)


def _read(root, subject, stimuli, **kw):
    ds = _dataset(root, **kw)
    return nsd.read_subject(nsd.subject_inputs(ds, str(root), subject), stimuli)


def _csv_trials(root, k):
    """{1-based global trial: 0-based nsdId} from nsd_stim_info_merged.csv (independent of the design)."""
    df = pd.read_csv(root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv", index_col=0)
    out = {}
    for r in range(3):
        for nsd_id, t in zip(df["nsdId"], df[f"subject{k}_rep{r}"]):
            if t > 0:
                out[int(t)] = int(nsd_id)
    return out


def _one_line(exc):
    assert "\n" not in str(exc.value)
    return str(exc.value)


# -- mapping, units, formats ---------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["1", "2"])
def test_trials_map_to_images_as_the_stim_info_csv_says(tree, stimuli, subject):
    root, _ = tree
    k = int(subject)
    rec = _read(root, subject, stimuli)
    truth = _csv_trials(root, k)
    dropped = [t for t, i in truth.items() if i + 1 == ONLY_S3] if k == 1 else []  # seen by subject 1 only
    assert sorted(truth) == list(range(1, N_SESSIONS[k] * T + 1))
    assert rec.attrs["trial"].tolist() == [t for t in sorted(truth) if t not in dropped]
    assert rec.attrs["dropped_trials"] == len(dropped) == (2 if k == 1 else 0)
    split = {nsd.TRAIN: stimuli.train, nsd.TEST: stimuli.test}
    got = [int(split[d].stimulus_id[i]) for d, i in zip(rec.datatype, rec.image_index)]
    assert got == [truth[t] for t in rec.attrs["trial"]]
    is_shared = np.isin(np.array(got) + 1, SHARED)
    assert (rec.datatype == np.where(is_shared, nsd.TEST, nsd.TRAIN)).all()
    assert rec.run.tolist() == [(t - 1) // T + 1 for t in rec.attrs["trial"]]  # run = session
    assert rec.source.name == "betas_fithrf_GLMdenoise_RR" and not rec.prenormalized


def test_betas_are_int16_over_300_at_the_union_of_labelled_voxels(tree, stimuli):
    root, args = tree
    rec = _read(root, "1", stimuli, rois=("V1", "nsdgeneral"))
    vols = args["rois"][1]
    inside = (vols["prf-visualrois"] > 0) | (vols["nsdgeneral"] > 0)
    ijk = rec.attrs["voxel_ijk"]
    assert len(ijk) == inside.sum() and inside[tuple(ijk.T)].all()
    raw = args["betas"][1][rec.attrs["trial"] - 1][:, ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    assert rec.fmri.dtype == np.float32
    np.testing.assert_allclose(rec.fmri, raw / 300.0, rtol=1e-6)
    assert np.abs(rec.fmri).max() > 1.0  # really % signal change, not raw int16 nor z-scores
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    affine[:3, 3] = -1.8 * (np.array(GRID) - 1) / 2
    np.testing.assert_allclose(rec.voxel_xyz, ijk * 1.8 + affine[:3, 3], atol=1e-5)  # float32 in the header
    # noise ceiling from ncsnr: r = sqrt(ncsnr² / (ncsnr² + mean over test images of 1/repeats))
    ncsnr = args["ncsnr"][1][tuple(ijk.T)]
    _, reps = np.unique(rec.image_index[rec.datatype == nsd.TEST], return_counts=True)
    np.testing.assert_allclose(rec.noise_ceiling, np.sqrt(ncsnr**2 / (ncsnr**2 + np.mean(1 / reps))))


def test_hdf5_and_nifti_read_identically(tree, stimuli):
    root, _ = tree
    a = _read(root, "1", stimuli, betas_format="nifti")
    b = _read(root, "1", stimuli, betas_format="hdf5")
    assert a.attrs["betas_files"][0].endswith(".nii.gz") and b.attrs["betas_files"][0].endswith(".hdf5")
    np.testing.assert_array_equal(a.fmri, b.fmri)
    np.testing.assert_array_equal(a.image_index, b.image_index)
    np.testing.assert_array_equal(a.voxel_xyz, b.voxel_xyz)


# -- ROIs ----------------------------------------------------------------------------------------


def test_roi_names_unions_and_qualification(tree, stimuli):
    root, args = tree
    rec = _read(root, "1", stimuli, atlases=list(ATLASES))
    vol = {a: v[tuple(rec.attrs["voxel_ijk"].T)] for a, v in args["rois"][1].items()}
    prf, kastner = vol["prf-visualrois"], vol["Kastner2015"]
    assert (rec.rois["V1v"] == (prf == 1)).all() and (rec.rois["V1d"] == (prf == 2)).all()
    assert (rec.rois["V1"] == np.isin(prf, [1, 2])).all() and rec.rois["V1"].any()
    assert (rec.rois["V3"] == np.isin(prf, [5, 6])).all()
    assert (rec.rois["V4"] == (prf == 7)).all() and (rec.rois["hV4"] == rec.rois["V4"]).all()
    assert (rec.rois["prfvisualroisV1"] == rec.rois["V1"]).all()
    assert (rec.rois["prfvisualrois"] == (prf > 0)).all()
    # Kastner2015 repeats V1v...: only qualified, the bare names stay prf-visualrois'
    assert (rec.rois["Kastner2015V1v"] == (kastner == 1)).all()
    assert (rec.rois["Kastner2015V1"] == np.isin(kastner, [1, 2])).all()
    assert (rec.rois["Kastner2015V3A"] == (kastner == 4)).all() and "V3A" not in rec.rois
    assert (rec.rois["FFA1"] == (vol["floc-faces"] == 2)).all() and "mTLfaces" in rec.rois
    assert (rec.rois["early"] == (vol["streams"] == 1)).all()
    assert (rec.rois["nsdgeneral"] == (vol["nsdgeneral"] == 1)).all()
    inside = np.logical_or.reduce([v > 0 for v in vol.values()])
    assert inside.all() and len(inside) == np.logical_or.reduce([v > 0 for v in args["rois"][1].values()]).sum()
    # config unions keep working as for GOD
    mask = masking.resolve_roi(rec, "LVC", {"LVC": ["V1", "V2", "V3"]})
    assert (mask == np.isin(prf, [1, 2, 3, 4, 5, 6])).all()


def test_atlas_selection_follows_the_roi_names(tree):
    root, _ = tree
    keys = lambda **kw: sorted(k for k in nsd.subject_inputs(_dataset(root, **kw), str(root), "1") if k.startswith("roi_"))
    assert keys(rois=["V1", "FFA1"]) == ["roi_flocfaces", "roi_prfvisualrois"]
    assert keys(rois=["Kastner2015V1"]) == ["roi_Kastner2015"]
    assert keys(rois=["LVC"]) == ["roi_flocfaces", "roi_nsdgeneral", "roi_prfvisualrois", "roi_streams"]
    assert keys(rois=["V1"], atlases=["streams"]) == ["roi_streams"]
    source, names = nsd.file_rois(_dataset(root, rois=["V1"]), str(root), "1")
    assert "prf-visualrois" in source and {"V1", "V1v", "hV4", "V4", "prfvisualroisV2"} <= names
    assert "nsdgeneral" not in names
    # the built-in table stands in for a missing ctab of a primary atlas; fsaverage's is used too
    tables = nsd._label_table("floc-faces", None, root / "x.nii.gz")
    assert tables[2] == "FFA-1"


def test_ctab_from_fsaverage_and_built_in(tmp_path):
    _write(tmp_path, ctab_dirs=("fsaverage",), betas={1: _betas(1)}, rois={1: _rois(1)}, ncsnr=None)
    ds = _dataset(tmp_path, subjects=("1",), atlases=["prf-visualrois"])
    files = nsd.subject_inputs(ds, str(tmp_path), "1")
    assert "fsaverage" in files["ctab_prfvisualrois"]
    for p in (tmp_path / "nsddata/freesurfer/fsaverage/label").glob("*.ctab"):
        p.unlink()
    files = nsd.subject_inputs(ds, str(tmp_path), "1")
    stim = nsd.read_stimuli(ds, str(tmp_path), SIZE)
    rec = nsd.read_subject(files, stim)
    assert "ctab_prfvisualrois" not in files and rec.attrs["label_tables"] == {"prf-visualrois": "built-in"}
    assert rec.rois["V2"].any()


# -- sessions, split, averaging ------------------------------------------------------------------


@pytest.mark.parametrize("sessions, expected", [([1, 3], [1, 3]), ("2-3", [2, 3]), (["1-2"], [1, 2])])
def test_session_selection(tree, sessions, expected):
    root, args = tree
    ds = _dataset(root, subjects=("1",), sessions=sessions)
    stim = nsd.read_stimuli(ds, str(root), SIZE)
    rec = nsd.read_subject(nsd.subject_inputs(ds, str(root), "1"), stim)
    assert rec.attrs["sessions"] == expected and sorted(set(rec.run.tolist())) == expected
    truth = _csv_trials(root, 1)
    trials = [t for t in sorted(truth) if (t - 1) // T + 1 in expected]
    assert rec.attrs["trial"].tolist() == trials and rec.attrs["dropped_trials"] == 0
    seen = {truth[t] for t in trials}
    assert set(stim.test.stimulus_id.astype(int)) == {i for i in seen if i + 1 in SHARED}
    assert set(stim.train.stimulus_id.astype(int)) == {i for i in seen if i + 1 not in SHARED}
    np.testing.assert_allclose(rec.fmri[:, 0], args["betas"][1][np.array(trials) - 1][
        :, *rec.attrs["voxel_ijk"][0]] / 300.0, rtol=1e-6)  # fmt: skip


def test_test_split_rule(tree, stimuli):
    root, args = tree
    # test: the shared images both subjects saw (ONLY_S3 only in subject 1's session 3)
    assert stimuli.test.stimulus_id.tolist() == [i - 1 for i in SHARED if i != ONLY_S3]
    assert stimuli.test.names.tolist() == [f"nsd{i - 1:05d}" for i in SHARED if i != ONLY_S3]
    # train: the union of both subjects' own images, sorted by nsdId
    assert stimuli.train.stimulus_id.tolist() == sorted(i - 1 for i in OWN[1] + OWN[2])
    assert (stimuli.test.category == -1).all() and stimuli.test.images.shape == (5, SIZE, SIZE, 3)
    brick = args["images"][SHARED[0] - 1]
    np.testing.assert_array_equal(stimuli.test.images[0], square_resize(Image.fromarray(brick), SIZE))
    alone = nsd.read_stimuli(_dataset(root, subjects=("1",)), str(root), SIZE)
    assert alone.test.stimulus_id.tolist() == [i - 1 for i in SHARED]
    assert alone.train.stimulus_id.tolist() == [i - 1 for i in OWN[1]]


@pytest.mark.parametrize("normalization, train_trials", [("run", "single"), ("none", "single"), ("run", "average")])
def test_mask_roi_zscores_per_session_and_averages_test_repeats(tree, tmp_path, monkeypatch, normalization,
                                                                 train_trials):  # fmt: skip
    """Through the DAG's own steps; prepare_images gets no ``subjects`` (as the rule calls it)."""
    root, args = tree
    monkeypatch.setitem(READERS, "nsd", nsd.READER)
    ds = _dataset(root, rois=("V1",))
    image_source = {"reader": "nsd", "root": str(root), "dataset": {k: v for k, v in ds.items() if k != "subjects"}}
    steps.prepare_images(image_source, SIZE, str(tmp_path / "images.h5"), "h")
    files = nsd.subject_inputs(ds, str(root), "1")
    out = tmp_path / "data.h5"
    source = {"reader": "nsd", "files": files, "options": {"train_trials": train_trials}}
    steps.mask_roi(source, str(tmp_path / "images.h5"), "1", "V1", {}, normalization, "metadata", str(out), "nsd", "h")
    got = prepared.read_subject_file(out)
    # independent: betas / 300 at the V1 voxels, z-scored within each session over its kept trials
    truth = _csv_trials(root, 1)
    trials = np.array([t for t in sorted(truth) if truth[t] + 1 != ONLY_S3])
    prf = args["rois"][1]["prf-visualrois"]  # V1 = labels 1 (V1v) and 2 (V1d), voxels in volume order
    ijk = np.argwhere(np.isin(prf, [1, 2]).transpose(2, 1, 0))[:, ::-1]
    x = args["betas"][1][trials - 1][:, ijk[:, 0], ijk[:, 1], ijk[:, 2]] / 300.0
    session = (trials - 1) // T + 1
    if normalization == "run":
        for s in np.unique(session):
            x[session == s] = (x[session == s] - x[session == s].mean(0)) / x[session == s].std(0)
    ids = np.array([truth[t] for t in trials])
    test_ids = [i - 1 for i in SHARED if i != ONLY_S3]
    expected = np.stack([x[ids == i].mean(0) for i in test_ids])
    np.testing.assert_allclose(got["test/fmri"], expected, atol=1e-5)
    assert got["test/image_index"].tolist() == list(range(5))
    assert len(got["test/fmri_trials"]) == np.isin(ids, test_ids).sum()  # single trials kept
    own = ~np.isin(ids + 1, SHARED)
    if train_trials == "single":
        assert got["train/run"].tolist() == session[own].tolist()
        np.testing.assert_allclose(got["train/fmri"], x[own], atol=1e-5)
    else:  # one row per training image (rows sorted by nsdId), the mean of its z-scored trials
        train_ids = np.unique(ids[own])
        assert got["train/image_index"].tolist() == list(range(len(train_ids)))
        assert (got["train/run"] == 0).all() and len(train_ids) < own.sum()
        np.testing.assert_allclose(got["train/fmri"], np.stack([x[own & (ids == i)].mean(0) for i in train_ids]), atol=1e-5)
    assert got.attrs["n_voxels"] == len(ijk) and got.attrs["normalization"] == normalization
    assert got.attrs["train_repeats"] == train_trials
    info = json.loads(got.attrs["source_info"])  # the reader's short provenance, for the data card
    assert info["sessions"] == [1, 2, 3] and info["train_trials"] == train_trials and "voxel_ijk" not in info
    read = json.loads(got.attrs["source_files"])  # every session file read is recorded, not only the first
    assert {k for k in read if k.startswith("session")} == {"session01", "session02", "session03"}
    assert all(v["bytes"] > 0 for v in read.values())


# -- bad input: one line naming the file, nothing written -----------------------------------------


def test_missing_session_file(tree, tmp_path, monkeypatch):
    root = _copy(tree, tmp_path)
    (root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session02.nii.gz").unlink()
    ds = _dataset(root, subjects=("1",), sessions="1-3", betas_format="nifti")
    with pytest.raises(InputError, match=r"betas file not found: .*subj01.*betas_session02\.nii\.gz \(session 2\)") as e:
        nsd.read_stimuli(ds, str(root), SIZE)
    _one_line(e)
    stim = nsd.read_stimuli(_dataset(root, subjects=("1",), betas_format="hdf5"), str(root), SIZE)
    monkeypatch.setitem(READERS, "nsd", nsd.READER)
    out = tmp_path / "data.h5"
    prepared.write_images_file(tmp_path / "images.h5", stim, {})
    with pytest.raises(InputError, match=r"betas_session02\.nii\.gz"):
        steps.mask_roi({"reader": "nsd", "files": nsd.subject_inputs(ds, str(root), "1")}, str(tmp_path / "images.h5"),
                       "1", "nsdgeneral", {}, "run", "metadata", str(out), "nsd", "h")  # fmt: skip
    assert not out.exists() and not list(tmp_path.glob("data.h5*"))


@pytest.mark.parametrize("stimpattern", [True, False])
def test_betas_trial_count_disagrees_with_design(tree, tmp_path, stimpattern):
    root = tmp_path / "nsd"
    args = _write(root, stimpattern=stimpattern)
    path = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session02.nii.gz"
    write_betas_session(path, args["betas"][1][T : 2 * T - 1], np.eye(4))
    with pytest.raises(InputError, match=r"betas_session02\.nii\.gz: 11 trials, expected 12") as e:
        _read(root, "1", None, betas_format="nifti")
    assert "nsd_expdesign.mat" in _one_line(e)


def test_unknown_atlas_and_roi(tree, stimuli):
    root, _ = tree
    ds = _dataset(root, rois=("FFA1",), atlases=["floc-foo"])
    with pytest.raises(InputError, match=r"roi: no ROI volume floc-foo\.nii\.gz \(atlases there: .*Kastner2015") as e:
        nsd.file_rois(ds, str(root), "1")
    _one_line(e)
    with pytest.raises(InputError, match=r"ROI volume not found: .*floc-foo\.nii\.gz \(atlases in .*floc-faces"):
        nsd.read_subject(nsd.subject_inputs(ds, str(root), "1"), stimuli)
    ds = _dataset(root, rois=("V1", "V7"))
    with pytest.raises(InputError, match=r"ROI 'V7' is neither in .*subj01/func1pt8mm/roi \(atlases .*\(ROIs there: .*'V1v'") as e:
        _check_file_rois(ds, "datasets[0]", nsd.READER, {})
    _one_line(e)
    _check_file_rois(_dataset(root, rois=("V1", "LVC")), "datasets[0]", nsd.READER, {"LVC": ["V1", "V2"]})
    rec = _read(root, "1", stimuli, rois=("V1",))
    with pytest.raises(InputError, match=r"ROI 'V7' not found.*available: .*'V1v'"):
        masking.resolve_roi(rec, "V7", {})


def test_brick_with_too_few_images(tree, tmp_path):
    root = _copy(tree, tmp_path)
    brick = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    with h5py.File(brick, "w") as f:
        f["imgBrick"] = np.zeros((25, 16, 16, 3), np.uint8)  # the test images need nsdId 29 (73KID 30)
    with pytest.raises(InputError, match=r"nsd_stimuli\.hdf5: imgBrick has 25 images, the design needs nsdId 29") as e:
        nsd.read_stimuli(_dataset(root), str(root), SIZE)
    _one_line(e)


def test_responses_disagree_with_design(tree, tmp_path, stimuli):
    root = _copy(tree, tmp_path)
    path = root / "nsddata/ppdata/subj01/behav/responses.tsv"
    df = pd.read_csv(path, sep="\t")
    row = df.index[(df["SESSION"] == 2) & (df["RUN"] == 2) & (df["TRIAL"] == 3)][0]
    df.loc[row, "73KID"] = 33
    df.to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match=r"responses\.tsv: SESSION 2 RUN 2 TRIAL 3 \(trial 9 of the session\) "
                                         r"has 73KID 33, the design gives \d+") as e:  # fmt: skip
        _read(root, "1", stimuli)
    _one_line(e)
    df.drop(index=row).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match=r"responses\.tsv: 11 trials in session 2, expected 12"):
        _read(root, "1", stimuli)
    df[df["SESSION"] != 2].to_csv(path, sep="\t", index=False)  # a session not listed at all: not checked
    assert _read(root, "1", stimuli).attrs["responses_sessions_checked"] == [1, 3]
    path.unlink()  # optional: without it the design alone decides
    assert _read(root, "1", stimuli).attrs["responses"] == ""


@pytest.mark.parametrize("options, pattern", [
    ({"sessions": "1-"}, r"options\.sessions: '1-' is not a session"),
    ({"sessions": [2, 2]}, r"options\.sessions: .* twice"),
    ({"sessions": 37}, r"options\.sessions: 37 is not a session"),
    ({"betas_format": "mat"}, r"options\.betas_format: 'mat' is not one of auto, nifti, hdf5"),
    ({"beta_version": "../x"}, r"options\.beta_version"),
    ({"atlases": "nsdgeneral"}, r"options\.atlases: 'nsdgeneral' is not 'auto' or a list"),
    ({"train_trials": "mean"}, r"options\.train_trials: 'mean' is not single or average"),
    ({"zscore": True}, r"options: unknown key\(s\) \['zscore'\]"),
])  # fmt: skip
def test_check_options(tree, options, pattern):
    with pytest.raises(InputError, match=pattern) as e:
        nsd.check(_dataset(tree[0], **options), "datasets[0]")
    assert _one_line(e).startswith("config error at datasets[0].options")


def test_check_accepts_defaults_and_rejects_god_keys(tree):
    nsd.check(_dataset(tree[0], sessions=["1-37", 40], atlases=["nsdgeneral"]), "datasets[0]")
    with pytest.raises(InputError, match=r"datasets\[0\]\.roi_source"):
        nsd.check({**_dataset(tree[0]), "roi_source": "nifti"}, "datasets[0]")
    with pytest.raises(InputError, match=r"datasets\[0\]\.subjects: NSD subject 'S1'"):
        nsd.check(_dataset(tree[0], subjects=("S1",)), "datasets[0]")
