"""The simulated GOD-like dataset: determinism, GOD layout, and the structure it promises."""

import filecmp

import bdpy
import h5py
import nibabel as nib
import numpy as np
import pytest

from fmrirecon.data.bdata import BDataFile
from fmrirecon.data.readers.images import read_image_list
from fmrirecon.data.simulation.dataset import simulate_dataset
from fmrirecon.data.simulation.images import N_CATEGORY_KINDS, category_table, draw_image


def _all_files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_same_seed_gives_byte_identical_files(tmp_path, sim_raw, smoke_config):
    again = tmp_path / "raw"
    simulate_dataset(smoke_config["simulation"], smoke_config["seed"], ["1", "2"], again)
    files = _all_files(sim_raw)
    assert files == _all_files(again)
    _, mismatch, errors = filecmp.cmpfiles(sim_raw, again, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


def test_other_seed_gives_other_data(tmp_path, sim_raw, smoke_config):
    other = tmp_path / "raw"
    simulate_dataset(smoke_config["simulation"], smoke_config["seed"] + 1, ["1"], other)
    a = BDataFile.open(sim_raw / "Subject1.h5").select("VoxelData")
    b = BDataFile.open(other / "Subject1.h5").select("VoxelData")
    assert a.shape == b.shape and not np.allclose(a, b)


def test_god_design_and_layout(sim_raw, tiny_sim):
    bd = bdpy.BData(str(sim_raw / "Subject1.h5"))  # the reference reader opens it
    n_train = tiny_sim["n_train_categories"] * tiny_sim["images_per_category"]
    n_test = tiny_sim["n_test_categories"]
    datatype = bd.select("DataType")[:, 0]
    assert (datatype == 1).sum() == n_train
    assert (datatype == 2).sum() == n_test * tiny_sim["test_repeats"]
    assert (datatype == 3).sum() == n_test * tiny_sim["imagery_repeats"]
    n_vox = sum(tiny_sim["voxels"].values())
    assert bd.select("ROI_VC").shape == (len(datatype), n_vox)
    for roi, count in tiny_sim["voxels"].items():
        assert bd.select(f"ROI_{roi}").shape[1] == count
    assert bd.select("ROI_LVC").shape[1] == sum(tiny_sim["voxels"][r] for r in ("V1", "V2", "V3"))
    # runs are unique across data types
    run = bd.select("Run")[:, 0]
    for r in np.unique(run):
        assert len(np.unique(datatype[run == r])) == 1
    # every training image once, every test image test_repeats times, ids from the image lists
    train_ids, train_names = read_image_list(sim_raw / "imageID_training.csv")
    test_ids, _ = read_image_list(sim_raw / "imageID_test.csv")
    stim = bd.select("stimulus_id")[:, 0]
    key = lambda x: np.round(np.asarray(x) * 1e6).astype(np.int64)  # noqa: E731
    assert sorted(key(stim[datatype == 1])) == sorted(key(train_ids))
    counts = np.unique(key(stim[datatype == 2]), return_counts=True)
    assert set(counts[0]) == set(key(test_ids)) and set(counts[1]) == {tiny_sim["test_repeats"]}
    # GOD list order: by synset, then by file name as a string
    syn = [n.split("_")[0] for n in train_names]
    assert list(zip(syn, train_names)) == sorted(zip(syn, train_names))
    # image_index is 1-based into the list
    idx = bd.select("image_index")[:, 0][datatype == 1].astype(int) - 1
    assert np.array_equal(key(train_ids[idx]), key(stim[datatype == 1]))
    # voxel coordinates agree with the NIfTI label volume
    img = nib.load(sim_raw / "sub-1_roi-labels.nii.gz")
    xyz = np.stack([bd.get_metadata(f"voxel_{a}", where="VoxelData") for a in "xyz"], 1)
    ijk = np.rint(np.c_[xyz, np.ones(len(xyz))] @ np.linalg.inv(img.affine).T)[:, :3].astype(int)
    labels = np.asarray(img.dataobj)[tuple(ijk.T)]
    v1 = bd.get_metadata("ROI_V1", where="VoxelData") == 1
    assert (labels[v1] == 1).all() and (labels[~v1] != 1).all()


def test_images_have_foreground_masks_and_categories(sim_raw, tiny_sim):
    with h5py.File(sim_raw / "truth.h5") as f:
        fg = f["images/train/foreground"][()]
        cats = f["images/train/category"][()]
    assert fg.shape[1:] == (tiny_sim["image_size"],) * 2
    frac = fg.mean(axis=(1, 2))
    assert (frac > 0.02).all() and (frac < 0.6).all()
    assert len(np.unique(cats)) == tiny_sim["n_train_categories"]


def test_at_least_fifty_categories_and_images_redraw_identically():
    assert N_CATEGORY_KINDS >= 50
    cats = category_table(60, seed=3)
    assert len(set(cats)) == 60
    a, ma = draw_image(cats[0], 48, seed=11)
    b, mb = draw_image(cats[0], 48, seed=11)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    c, _ = draw_image(cats[0], 48, seed=12)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError):
        category_table(N_CATEGORY_KINDS + 1, seed=0)


def test_noise_ceiling_and_subject_noise(sim_raw, tiny_sim):
    with h5py.File(sim_raw / "truth.h5") as f:
        nc1 = f["sub-1/noise_ceiling"][()]
        nc2 = f["sub-2/noise_ceiling"][()]
        sig = f["sub-1/signal_train"][()]
    assert ((nc1 > 0) & (nc1 < 1)).all()
    assert np.median(nc2) < np.median(nc1)  # subject 2 is the noisier one
    np.testing.assert_allclose(sig.std(0), 1.0, atol=1e-3)  # unit signal sd over training images


def test_retinotopy_early_voxels_see_their_receptive_field(sim_raw, tiny_sim):
    """Early voxels follow image features at their pRF centre (not at the mirrored position),
    and pRFs grow from V1 to V4; higher areas have no pRF."""
    from fmrirecon.data.simulation.voxels import FEATURE_RES, feature_maps

    with h5py.File(sim_raw / "truth.h5") as f:
        roi = f["sub-1/roi"][()].astype(str)
        prf = f["sub-1/prf_xy"][()]
        sigma = f["sub-1/prf_sigma"][()]
        signal = f["sub-1/signal_train"][()]
    assert np.isnan(prf[roi == "LOC"]).all()
    means = {r: np.nanmean(sigma[roi == r]) for r in ("V1", "V2", "V3", "V4")}
    assert means["V1"] < means["V2"] < means["V3"] < means["V4"]

    images = np.load(sim_raw / f"images_{tiny_sim['image_size']}.npz")["train_images"]
    energy = feature_maps(images).sum(1).numpy()  # (N, R, R)
    v1 = np.flatnonzero((roi == "V1") & (np.hypot(prf[:, 0], prf[:, 1]) > 0.15))

    def at(xy):
        ij = np.clip(((xy + 0.5) * FEATURE_RES).astype(int), 0, FEATURE_RES - 1)
        return energy[:, ij[1], ij[0]]

    r_centre = [np.corrcoef(signal[:, v], at(prf[v]))[0, 1] for v in v1]
    r_mirror = [np.corrcoef(signal[:, v], at(-prf[v]))[0, 1] for v in v1]
    assert np.mean(r_centre) > np.mean(r_mirror) + 0.1


def test_npz_twin_matches_god_layout(sim_raw, tiny_sim):
    npz = np.load(sim_raw / "sbj_1.npz")
    n_train = tiny_sim["n_train_categories"] * tiny_sim["images_per_category"]
    assert npz["arr_0"].shape[0] == n_train and npz["arr_3"].shape == (n_train,)
    assert npz["arr_2"].shape[0] == tiny_sim["n_test_categories"]
    labels = npz["arr_4"]
    for i in range(npz["arr_2"].shape[0]):
        np.testing.assert_allclose(npz["arr_2"][i], npz["arr_1"][labels == i].mean(0), atol=1e-5)
    assert npz["VC"].dtype == bool and npz["VC"].all()
    assert not (npz["LVC"] & npz["HVC"]).any()
    images = np.load(sim_raw / f"images_{tiny_sim['image_size']}.npz")
    assert images["train_images"].dtype == np.uint8 and images["train_images"].shape[0] == n_train
