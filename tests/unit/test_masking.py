"""ROI masking and normalisation: train-only statistics, averaging, ROI nesting, bad inputs."""

import shutil

import h5py
import numpy as np
import pytest

from fmrirecon.data import masking
from fmrirecon.data.bdata import BDataBuilder, BDataFile
from fmrirecon.data.prepared import read_images_file, read_subject_file
from fmrirecon.data.readers import READERS
from fmrirecon.data.steps import mask_roi
from fmrirecon.errors import InputError

COMPOSITES = {"LVC": ["V1", "V2", "V3"], "HVC": ["LOC", "FFA", "PPA"], "VC": ["V1", "V2", "V3", "V4", "LOC", "FFA", "PPA"]}


def _source(raw, subject="1", reader="god_bdata", subject_file=None):
    files = {"subject": subject_file or str(raw / (f"Subject{subject}.h5" if reader == "god_bdata" else f"sbj_{subject}.npz"))}
    if reader == "god_bdata":
        files.update(unlabeled=str(raw / f"Subject{subject}_unlabeled.h5"),
                     roi_labels=str(raw / f"sub-{subject}_roi-labels.nii.gz"), roi_table=str(raw / "roi_labels.tsv"))  # fmt: skip
    return {"reader": reader, "files": files, "truth": str(raw / "truth.h5")}


def _mask(tmp_path, raw, images, roi="VC", normalization="run", roi_source="metadata", **kw):
    out = tmp_path / f"roi-{roi}" / "data.h5"
    mask_roi(_source(raw, **kw), str(images), "1", roi, COMPOSITES, normalization, roi_source,
             str(out), "sim", "hash")  # fmt: skip
    return read_subject_file(out), out


def test_prepared_file_contents(tmp_path, sim_raw, sim_images, tiny_sim):
    d, _ = _mask(tmp_path, sim_raw, sim_images)
    n_vox = sum(tiny_sim["voxels"].values())
    n_test = tiny_sim["n_test_categories"]
    assert d["train/fmri"].dtype == np.float32 and d["train/fmri"].shape[1] == n_vox
    assert d["test/fmri"].shape == (n_test, n_vox)
    assert np.array_equal(d["test/image_index"], np.arange(n_test))
    assert d["test/fmri_trials"].shape[0] == n_test * tiny_sim["test_repeats"]
    assert d["imagery/fmri"].shape == (n_test, n_vox)
    assert d["unlabeled/fmri"].shape == (tiny_sim["n_unlabeled_fmri"], n_vox)
    assert d["voxels/xyz"].shape == (n_vox, 3) and np.isfinite(d["voxels/xyz"]).all()
    assert d["voxels/noise_ceiling"].shape == (n_vox,)
    for key in ("source_sha256", "config_hash", "source_file", "dataset", "subject", "roi"):
        assert key in d.attrs
    assert len(d.attrs["source_sha256"]) == 64
    # image indices point into images.h5 and the training images are all covered once
    stim = read_images_file(sim_images, with_images=False)
    assert sorted(d["train/image_index"]) == list(range(len(stim.train)))


def test_test_average_equals_mean_of_single_trials(tmp_path, sim_raw, sim_images):
    d, _ = _mask(tmp_path, sim_raw, sim_images)
    for row, img in enumerate(d["test/image_index"]):
        singles = d["test/fmri_trials"][d["test/trial_image_index"] == img]
        np.testing.assert_allclose(d["test/fmri"][row], singles.mean(0), rtol=1e-5, atol=1e-6)


def test_run_normalisation_is_within_run(tmp_path, sim_raw, sim_images):
    d, _ = _mask(tmp_path, sim_raw, sim_images, normalization="run")
    x, run = d["train/fmri"], d["train/run"]
    for r in np.unique(run):
        np.testing.assert_allclose(x[run == r].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(x[run == r].std(0), 1, atol=1e-4)


@pytest.mark.parametrize("normalization", ["run", "train"])
def test_training_data_never_see_test_statistics(tmp_path, sim_raw, sim_images, normalization):
    """Changing every test sample leaves the prepared training data and statistics untouched."""
    d, _ = _mask(tmp_path / "a", sim_raw, sim_images, normalization=normalization)
    altered = tmp_path / "raw"
    shutil.copytree(sim_raw, altered)
    bd = BDataFile.open(sim_raw / "Subject1.h5")
    with h5py.File(altered / "Subject1.h5", "r+") as f:
        data = f["dataset"][()]
        test_rows = bd.select("DataType")[:, 0] != 1
        vox = bd.column_mask("VoxelData")
        data[np.ix_(test_rows, vox)] = data[np.ix_(test_rows, vox)] * 3.0 + 50.0
        f["dataset"][...] = data
    e, _ = _mask(tmp_path / "b", altered, sim_images, normalization=normalization)
    np.testing.assert_array_equal(d["train/fmri"], e["train/fmri"])
    np.testing.assert_array_equal(d["normalization/train_mean"], e["normalization/train_mean"])
    assert not np.allclose(d["test/fmri_trials"], e["test/fmri_trials"]) or normalization == "run"
    if normalization == "train":
        raw_train = bd.select("VoxelData")[bd.select("DataType")[:, 0] == 1]
        # the reader keeps voxels as float32: statistics agree to float32 precision
        np.testing.assert_allclose(d["normalization/train_mean"], raw_train.mean(0), rtol=1e-6)
        np.testing.assert_allclose(d["normalization/train_std"], raw_train.std(0, ddof=1), rtol=1e-5)
        np.testing.assert_allclose(d["train/fmri"].mean(0), 0, atol=1e-4)


def test_roi_nesting_and_unions(tmp_path, sim_raw, sim_images):
    vc, _ = _mask(tmp_path, sim_raw, sim_images, roi="VC")
    lvc, _ = _mask(tmp_path, sim_raw, sim_images, roi="LVC")
    hvc, _ = _mask(tmp_path, sim_raw, sim_images, roi="HVC")
    key = lambda d: {tuple(r) for r in d["voxels/xyz"]}  # noqa: E731
    assert key(lvc) < key(vc) and key(hvc) < key(vc) and not key(lvc) & key(hvc)
    names = list(vc["voxels/roi_names"])
    assert names == ["V1", "V2", "V3", "V4", "LOC", "FFA", "PPA"]
    assert (vc["voxels/roi_membership"].sum(0) == 1).all()  # every VC voxel in exactly one area
    # a union defined only in the config
    rec = READERS["god_bdata"].read_subject({"subject": sim_raw / "Subject1.h5"}, read_images_file(sim_images, with_images=False))
    union = masking.resolve_roi(rec, "V1V2", {"V1V2": ["V1", "V2"]})
    assert union.sum() == rec.rois["V1"].sum() + rec.rois["V2"].sum()


def test_nifti_roi_source_matches_metadata(tmp_path, sim_raw, sim_images):
    meta, _ = _mask(tmp_path / "m", sim_raw, sim_images, roi="LVC")
    nii, _ = _mask(tmp_path / "n", sim_raw, sim_images, roi="LVC", roi_source="nifti")
    np.testing.assert_array_equal(meta["voxels/xyz"], nii["voxels/xyz"])
    np.testing.assert_array_equal(meta["train/fmri"], nii["train/fmri"])


def test_npz_twin_gives_the_same_design(tmp_path, sim_raw, sim_images):
    bd, _ = _mask(tmp_path / "b", sim_raw, sim_images, roi="VC")
    npz, _ = _mask(tmp_path / "n", sim_raw, sim_images, roi="VC", reader="god_npz")
    assert npz.attrs["normalization"] == "none"  # the npz is normalised by its provider
    order_b = np.argsort(bd["train/image_index"], kind="stable")
    order_n = np.argsort(npz["train/image_index"], kind="stable")
    # both are per-run z-scored: same values up to float32 rounding
    np.testing.assert_allclose(bd["train/fmri"][order_b], npz["train/fmri"][order_n], atol=1e-4)
    np.testing.assert_allclose(bd["test/fmri"], npz["test/fmri"], atol=1e-4)


# --- bad input: one clear line, a non-zero exit (see test_cli), and no output -----------------


def _rewrite_subject(src_raw, dst_raw, mutate):
    shutil.copytree(src_raw, dst_raw)
    bd = BDataFile.open(src_raw / "Subject1.h5")
    with h5py.File(dst_raw / "Subject1.h5", "r+") as f:
        mutate(f, bd)


def _expect_failure(tmp_path, raw, images, match, **kw):
    out = tmp_path / "roi-VC" / "data.h5"
    with pytest.raises(InputError, match=match) as info:
        _mask(tmp_path, raw, images, **kw)
    assert "\n" not in str(info.value)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temporary left behind
    return str(info.value)


def test_nan_voxels_fail_cleanly(tmp_path, sim_raw, sim_images):
    def add_nan(f, bd):
        data = f["dataset"][()]
        data[3, np.flatnonzero(bd.column_mask("ROI_V1"))[2]] = np.nan
        f["dataset"][...] = data

    _rewrite_subject(sim_raw, tmp_path / "raw", add_nan)
    msg = _expect_failure(tmp_path, tmp_path / "raw", sim_images, r"NaN/Inf values")
    assert "Subject1.h5" in msg and "ROI VC" in msg


def test_missing_roi_and_empty_roi(tmp_path, sim_raw, sim_images):
    _expect_failure(tmp_path, sim_raw, sim_images, r"ROI 'MT' not found.*available", roi="MT")

    def empty_ppa(f, bd):
        keys = [k.decode() for k in f["metadata/key"][()]]
        value = f["metadata/value"][()]
        row = keys.index("ROI_PPA")
        value[row][value[row] == 1] = 0
        f["metadata/value"][...] = value

    _rewrite_subject(sim_raw, tmp_path / "raw", empty_ppa)
    _expect_failure(tmp_path, tmp_path / "raw", sim_images, r"ROI PPA is empty", roi="PPA")


def test_missing_and_corrupt_files(tmp_path, sim_raw, sim_images):
    _expect_failure(tmp_path, sim_raw, sim_images, r"Subject9\.h5", subject_file=str(sim_raw / "Subject9.h5"))
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes((sim_raw / "Subject1.h5").read_bytes()[:5000])
    _expect_failure(tmp_path, sim_raw, sim_images, r"corrupt\.h5", subject_file=str(bad))


def test_missing_metadata_key(tmp_path, sim_raw, sim_images):
    def drop_datatype(f, bd):
        keys = [k.decode() for k in f["metadata/key"][()]]
        renamed = np.array([("Datatype_x" if k == "DataType" else k).encode() for k in keys])
        del f["metadata/key"]
        f["metadata/key"] = renamed

    _rewrite_subject(sim_raw, tmp_path / "raw", drop_datatype)
    _expect_failure(tmp_path, tmp_path / "raw", sim_images, r"DataType")


def test_image_id_without_image(tmp_path, sim_raw, sim_images):
    def unknown_id(f, bd):
        data = f["dataset"][()]
        col = np.flatnonzero(bd.column_mask("stimulus_id"))[0]
        row = np.flatnonzero(bd.select("DataType")[:, 0] == 1)[0]
        data[row, col] = 9999999.000001
        f["dataset"][...] = data

    _rewrite_subject(sim_raw, tmp_path / "raw", unknown_id)
    _expect_failure(tmp_path, tmp_path / "raw", sim_images, r"9999999")


def test_trial_and_image_counts_disagree(tmp_path, sim_raw, sim_images):
    """A test image whose trials are all missing: trial and image counts disagree."""
    def drop_test_image(f, bd):
        stim = bd.select("stimulus_id")[:, 0]
        dt = bd.select("DataType")[:, 0]
        first_test = stim[dt == 2][0]
        data = f["dataset"][()]
        col = np.flatnonzero(bd.column_mask("DataType"))[0]
        data[(dt == 2) & (stim == first_test), col] = 3  # relabel its trials as imagery
        data[(dt == 3), col] = 3
        f["dataset"][...] = data

    _rewrite_subject(sim_raw, tmp_path / "raw", drop_test_image)
    _expect_failure(tmp_path, tmp_path / "raw", sim_images, r"test images have no test trials")


def test_unlabeled_voxel_count_mismatch(tmp_path, sim_raw, sim_images):
    raw = tmp_path / "raw"
    shutil.copytree(sim_raw, raw)
    b = BDataBuilder()
    b.add("VoxelData", np.zeros((4, 5)))
    b.save(raw / "Subject1_unlabeled.h5")
    _expect_failure(tmp_path, raw, sim_images, r"Subject1_unlabeled\.h5.*5 voxels")


def test_foreground_masks_that_do_not_match_the_images_are_refused(tmp_path, sim_raw, smoke_config):
    """A truth file whose image names differ from the dataset's images must not be attached."""
    from fmrirecon.data.steps import prepare_images

    raw = tmp_path / "raw"
    shutil.copytree(sim_raw, raw)
    with h5py.File(raw / "truth.h5", "r+") as f:
        names = f["images/train/names"][()]
        fg = f["images/train/foreground"][()]
        del f["images/train/names"], f["images/train/foreground"]
        f["images/train/names"] = names[:-1]  # one image fewer than the image list
        f["images/train/foreground"] = fg[:-1]
    source = {"reader": "god_bdata", "root": str(raw), "dataset": {"unpaired_images": ""}, "truth": str(raw / "truth.h5")}
    out = tmp_path / "images.h5"
    with pytest.raises(InputError, match=r"truth\.h5: foreground masks do not match the train image names"):
        prepare_images(source, smoke_config["image_size"], str(out), "x")
    assert not out.exists()


def test_a_composite_column_that_disagrees_with_its_parts_is_used_with_a_warning(caplog):
    from pathlib import Path

    from fmrirecon.data.readers.base import SubjectRecording

    v = 6
    rois = {"LOC": np.array([1, 1, 0, 0, 0, 0], bool), "FFA": np.zeros(v, bool), "PPA": np.array([0, 0, 1, 0, 0, 0], bool),
            "HVC": np.array([1, 1, 1, 1, 0, 0], bool)}  # fmt: skip
    rec = SubjectRecording(fmri=np.zeros((2, v), np.float32), datatype=np.array([1, 2]), run=np.ones(2, int),
                           image_index=np.zeros(2, int), voxel_xyz=np.zeros((v, 3)), rois=rois, source=Path("S.h5"))  # fmt: skip
    with caplog.at_level("WARNING"):
        mask = masking.resolve_roi(rec, "HVC", COMPOSITES)
    assert mask.tolist() == rois["HVC"].tolist()  # the file's own definition is used ...
    assert "ROI_HVC (4 voxels)" in caplog.text and "1 differ" in caplog.text and "empty: ['FFA']" in caplog.text
    caplog.clear()
    rois["FFA"] = np.array([0, 0, 0, 0, 1, 0], bool)
    rois["HVC"] = rois["LOC"] | rois["FFA"] | rois["PPA"]
    with caplog.at_level("WARNING"):
        masking.resolve_roi(rec, "HVC", COMPOSITES)
    assert "ROI_HVC" not in caplog.text  # a column that equals the union of non-empty parts: silent
