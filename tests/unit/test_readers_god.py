"""GOD readers: image lists/folders, image npz, BData subjects (ours and bdpy's), npz subjects."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fmrirecon.data.bdata import BDataBuilder
from fmrirecon.data.readers import READERS
from fmrirecon.data.readers.god import read_god_bdata, read_god_npz
from fmrirecon.data.readers.images import (find_stimulus_rows, load_image_folder,
                                           read_god_stimuli, read_image_list, read_npz_stimuli,
                                           stimulus_id_from_name, stimulus_id_key)
from fmrirecon.errors import InputError

SIZE = 8
SYNSETS = [1518878, 2084071, 3626115, 4254680, 9999999]
V = 40
ROIS = {"ROI_V1": np.arange(V) < 12, "ROI_hV4": (np.arange(V) >= 12) & (np.arange(V) < 20),
        "ROI_VC": np.ones(V, bool)}


def _names(split):
    if split == "training":  # 5 categories × 2 images
        return [f"n{s:08d}_{i}" for s in SYNSETS for i in (10042, 449)]
    return [f"n{s:08d}_{i}" for s, i in zip(SYNSETS, (62, 19498, 7, 130, 14910))]


def _ids(split):
    return np.array([stimulus_id_from_name(n) for n in _names(split)])


def _write_image(path, seed, size=(20, 14)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def god_root(tmp_path):
    """A toy GOD stimulus folder: lists as in the GitHub repo, mixed image extensions."""
    root = tmp_path / "god"
    exts = [".JPEG", ".jpg", ".png", ".jpeg", ".JPG"]
    for split, csv in (("training", "imageID_training.csv"), ("test", "imageID_test.csv")):
        folder = root / "images" / split
        folder.mkdir(parents=True)
        rows = []
        for i, (name, sid) in enumerate(zip(_names(split), _ids(split))):
            rows.append(f'{sid:.6f},"{name}.JPEG"')
            _write_image(folder / f"{name}{exts[i % len(exts)]}", seed=len(split) * 100 + i)
        (root / csv).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def stimuli(god_root):
    return read_god_stimuli(god_root, SIZE)


def _design(seed=0):
    """60 samples: 10 training, 30 test (5 × 6), 20 imagery (5 × 4); shuffled within types."""
    rng = np.random.default_rng(seed)
    train_idx = rng.permutation(10)
    test_idx = rng.permutation(np.repeat(np.arange(5), 6))
    imag_idx = rng.permutation(np.repeat(np.arange(5), 4))
    datatype = np.repeat([1, 2, 3], [10, 30, 20])
    run = np.r_[np.repeat([1, 2], 5), np.repeat([1, 2, 3], 10), np.repeat([1, 2], 10)]
    label = np.r_[_ids("training")[train_idx], _ids("test")[test_idx],
                  np.array(SYNSETS, float)[imag_idx]]
    label[:10] += 3e-9  # float noise: must still match as round(id * 1e6)
    index = np.r_[train_idx, test_idx, imag_idx]
    voxels = rng.standard_normal((60, V))
    xyz = rng.uniform(-60, 60, (V, 3))
    return datatype, run, label, index, voxels, xyz


def _write_subject(path, writer="ours", label_key="stimulus_id", seed=0, corrupt_label=None):
    datatype, run, label, index, voxels, xyz = _design(seed)
    if corrupt_label is not None:
        label = label.copy()
        label[3] = corrupt_label
    wrong_index = index + 1.0
    wrong_index[0] += 1  # the file's own image_index is wrong for one sample (old GOD versions)
    columns = [("DataType", datatype), ("Run", run), (label_key, label),
               ("image_index", wrong_index)]
    if writer == "bdpy":
        bdpy = pytest.importorskip("bdpy")
        bd = bdpy.BData()
        for key, col in columns:  # label columns first, as in the .mat-derived files
            bd.add(col.astype(float), key)
        bd.add(voxels, "VoxelData")
        for axis, col in zip("xyz", xyz.T):
            bd.add_metadata(f"voxel_{axis}", col, f"voxel {axis}", where="VoxelData")
        for key, mask in ROIS.items():
            bd.add_metadata(key, mask.astype(float), f"1 = {key}", where="VoxelData")
        bd.save(str(path))
    else:
        b = BDataBuilder()
        b.add("VoxelData", voxels)
        for key, col in columns:
            b.add(key, col)
        for axis, col in zip("xyz", xyz.T):
            b.add_metadata(f"voxel_{axis}", col, f"voxel {axis}")
        for key, mask in ROIS.items():
            b.add_metadata(key, mask.astype(float), f"1 = {key}")
        b.save(path)
    return path


# -- ids and lists ----------------------------------------------------------------------------


def stimulus_ids_match(a, b) -> np.ndarray:
    """Elementwise (broadcast) bool: GOD ids equal as the readers key them; NaN never."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (stimulus_id_key(a) == stimulus_id_key(b)) & np.isfinite(a) & np.isfinite(b)


def test_stimulus_ids_match_as_integers():
    assert stimulus_ids_match(1518878.01491, 1518878.014910)
    assert not stimulus_ids_match(1518878.01491, 1518878.014911)
    assert not stimulus_ids_match(np.nan, np.nan)
    assert stimulus_ids_match([1.000001, 2.0], [1.000001 + 1e-9, 2.000001]).tolist() == [True,
                                                                                         False]
    assert find_stimulus_rows([2.0, 5.0, np.nan], [1.0, 2.0]).tolist() == [1, -1, -1]
    assert stimulus_id_from_name("n03626115_19498.JPEG") == pytest.approx(3626115.019498)


def test_read_image_list_csv_and_tsv(tmp_path):
    csv = tmp_path / "imageID_training.csv"
    csv.write_text('1518878.010042,"n01518878_10042.JPEG"\n1518878.01491,n01518878_14910.JPEG\n')
    ids, names = read_image_list(csv)
    assert names.tolist() == ["n01518878_10042", "n01518878_14910"]
    assert stimulus_ids_match(ids, [1518878.010042, 1518878.014910]).all()
    tsv = tmp_path / "stimulus_ImageNetTraining.tsv"
    tsv.write_text("stimulus_name\tstimulus_id\tcategory_index\timage_index\n"
                   "n01518878_10042\t1518878.010042\t1\t1\nn01518878_14910\t1518878.01491\t1\t2\n")
    ids2, names2 = read_image_list(tsv)
    assert names2.tolist() == names.tolist()
    assert stimulus_ids_match(ids, ids2).all()
    with pytest.raises(InputError, match="missing.csv"):
        read_image_list(tmp_path / "missing.csv")


def test_read_god_stimuli(god_root, tmp_path):
    unpaired = tmp_path / "unpaired"
    unpaired.mkdir()
    for i, name in enumerate(["b.png", "a.JPEG", "c.jpg"]):
        _write_image(unpaired / name, seed=50 + i, size=(9, 30))
    (unpaired / "notes.txt").write_text("not an image")
    st = read_god_stimuli(god_root, SIZE, unpaired_folder=unpaired)
    assert st.train.images.shape == (10, SIZE, SIZE, 3) and st.train.images.dtype == np.uint8
    assert st.test.images.shape == (5, SIZE, SIZE, 3)
    assert st.train.names.tolist() == _names("training")
    assert st.train.category.tolist() == [s for s in SYNSETS for _ in (0, 1)]
    assert st.test.category.tolist() == SYNSETS
    assert stimulus_ids_match(st.test.stimulus_id, _ids("test")).all()
    assert st.unpaired.names.tolist() == ["a", "b", "c"]
    assert np.isnan(st.unpaired.stimulus_id).all() and (st.unpaired.category == -1).all()
    # centre crop + LANCZOS, checked against PIL directly
    with Image.open(next((god_root / "images/training").glob(_names("training")[0] + ".*"))) as im:
        expected = np.asarray(im.convert("RGB").crop((3, 0, 17, 14)).resize(
            (SIZE, SIZE), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(st.train.images[0], expected)


def test_missing_image_names_id_folder_and_list(god_root):
    (next((god_root / "images/test").glob(_names("test")[2] + ".*"))).unlink()
    with pytest.raises(InputError, match=r"3626115\.000007.*images/test.*imageID_test\.csv"):
        read_god_stimuli(god_root, SIZE)


def test_load_image_folder_missing_folder(tmp_path):
    with pytest.raises(InputError, match="nofolder"):
        load_image_folder(tmp_path / "nofolder", ["a"], SIZE)


# -- image npz --------------------------------------------------------------------------------


def test_read_npz_stimuli_uint8_and_float(god_root, tmp_path):
    rng = np.random.default_rng(1)
    u8 = tmp_path / "images_256.npz"
    np.savez(u8, train_images=rng.integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8),
             test_images=rng.integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8))
    st = read_npz_stimuli(u8, SIZE, god_root / "imageID_training.csv",
                          god_root / "imageID_test.csv")
    assert st.train.names.tolist() == _names("training")
    assert st.test.category.tolist() == SYNSETS
    with np.load(u8) as z:
        np.testing.assert_array_equal(st.train.images, z["train_images"])
    f01 = tmp_path / "images_112.npz"
    np.savez(f01, train_images=rng.random((10, 12, 12, 3)), test_images=rng.random((5, 12, 12, 3)))
    st2 = read_npz_stimuli(f01, SIZE)
    assert st2.train.images.shape == (10, SIZE, SIZE, 3) and st2.train.images.dtype == np.uint8
    assert st2.train.images.max() > 200
    assert st2.test.names[0] == "test_0000" and np.isnan(st2.test.stimulus_id).all()
    assert (st2.test.category == -1).all()


def test_read_npz_stimuli_count_mismatch(god_root, tmp_path):
    path = tmp_path / "images_256.npz"
    np.savez(path, train_images=np.zeros((9, SIZE, SIZE, 3), np.uint8),
             test_images=np.zeros((5, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(InputError, match=r"images_256.npz.*train_images has 9.*lists 10"):
        read_npz_stimuli(path, SIZE, god_root / "imageID_training.csv")
    np.savez(path, train_images=np.zeros((9, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(InputError, match="'test_images' missing"):
        read_npz_stimuli(path, SIZE)


# -- BData subjects ---------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["ours", "bdpy"])
def test_read_god_bdata(stimuli, tmp_path, writer):
    path = _write_subject(tmp_path / f"Subject1_{writer}.h5", writer=writer)
    rec = read_god_bdata(path, stimuli)
    datatype, run, label, index, voxels, xyz = _design()
    assert rec.fmri.dtype == np.float32 and rec.fmri.shape == (60, V)
    np.testing.assert_allclose(rec.fmri, voxels.astype(np.float32))
    assert rec.datatype.tolist() == datatype.tolist()
    assert rec.image_index.tolist() == index.tolist()
    # imagery samples point at the test image of their category
    imag = rec.datatype == 3
    assert (stimuli.test.category[rec.image_index[imag]] == label[imag].astype(int)).all()
    # run numbers collide across data types in the toy file → renumbered by (DataType, Run)
    assert rec.attrs["run_renumbered"]
    assert rec.run.tolist() == (np.r_[np.repeat([1, 2], 5), np.repeat([3, 4, 5], 10),
                                      np.repeat([6, 7], 10)]).tolist()
    np.testing.assert_allclose(rec.voxel_xyz, xyz)
    assert set(rec.rois) == {"V1", "hV4", "V4", "VC"}
    assert rec.rois["V4"].tolist() == ROIS["ROI_hV4"].tolist()
    assert rec.rois["V1"].dtype == bool and rec.rois["VC"].all()
    assert rec.attrs["file_image_index_mismatches"] == 1
    assert rec.source == path and not rec.prenormalized and rec.unlabeled is None


def test_label_alias_and_missing_xyz(stimuli, tmp_path):
    datatype, run, label, index, voxels, _ = _design()
    b = BDataBuilder()
    b.add("Label", label)
    b.add("DataType", datatype)
    b.add("Run", np.r_[np.arange(10), np.arange(10, 60)])  # unique runs: kept as is
    b.add("VoxelData", voxels)
    b.add_metadata("ROI_VC", np.ones(V), "1 = VC")
    b.save(tmp_path / "old.h5")
    rec = READERS["god_bdata"].read_subject({"subject": tmp_path / "old.h5"}, stimuli)
    assert rec.attrs["label_key"] == "Label" and not rec.attrs["run_renumbered"]
    assert rec.run.tolist() == list(range(60))
    assert rec.image_index.tolist() == index.tolist()
    assert rec.voxel_xyz.shape == (V, 3) and np.isnan(rec.voxel_xyz).all()


def test_unlabeled_pool(stimuli, tmp_path):
    path = _write_subject(tmp_path / "Subject1.h5")
    pool = BDataBuilder()
    pool.add("VoxelData", np.ones((7, V)))
    pool.save(tmp_path / "pool.h5")
    rec = read_god_bdata(path, stimuli, unlabeled_file=tmp_path / "pool.h5")
    assert rec.unlabeled.shape == (7, V) and rec.unlabeled.dtype == np.float32
    bad = BDataBuilder()
    bad.add("VoxelData", np.ones((7, V - 1)))
    bad.save(tmp_path / "pool_bad.h5")
    with pytest.raises(InputError, match=r"pool_bad.h5.*39 voxels.*expected 40"):
        read_god_bdata(path, stimuli, unlabeled_file=tmp_path / "pool_bad.h5")


def test_id_without_image(stimuli, tmp_path):
    path = _write_subject(tmp_path / "Subject2.h5", corrupt_label=1234567.000001)
    with pytest.raises(InputError, match=r"1234567\.000001.*Subject2\.h5.*training image list"):
        read_god_bdata(path, stimuli)


def test_bdata_subject_errors(stimuli, tmp_path):
    with pytest.raises(InputError, match="Subject9.h5"):
        read_god_bdata(tmp_path / "Subject9.h5", stimuli)
    b = BDataBuilder()
    b.add("VoxelData", np.ones((4, V)))
    b.add("DataType", np.ones(4))
    b.save(tmp_path / "norun.h5")
    with pytest.raises(InputError, match=r"norun.h5.*'Run' not found"):
        read_god_bdata(tmp_path / "norun.h5", stimuli)
    b.add("Run", np.ones(4))
    b.save(tmp_path / "nolabel.h5")
    with pytest.raises(InputError, match=r"nolabel.h5.*stimulus_id"):
        read_god_bdata(tmp_path / "nolabel.h5", stimuli)
    b = BDataBuilder()
    b.add("VoxelData", np.ones((4, V)))
    b.add("DataType", np.array([1, 2, 4, 1]))
    b.save(tmp_path / "dtype.h5")
    with pytest.raises(InputError, match=r"dtype.h5.*DataType of sample 2"):
        read_god_bdata(tmp_path / "dtype.h5", stimuli)


# -- npz subjects -----------------------------------------------------------------------------


def _npz_arrays(seed=0):
    rng = np.random.default_rng(seed)
    test_labels = np.repeat(np.arange(5), 7)
    arr_1 = rng.standard_normal((35, V))
    arr_2 = np.stack([arr_1[test_labels == i].mean(0) for i in range(5)])
    masks = {k[4:] if k != "ROI_hV4" else "V4": m for k, m in ROIS.items()}
    return dict(arr_0=rng.standard_normal((10, V)), arr_1=arr_1, arr_2=arr_2,
                arr_3=rng.permutation(10), arr_4=test_labels, arr_5=rng.random(V),
                arr_6=rng.random(V), **masks)


def test_read_god_npz(stimuli, tmp_path):
    arrays = _npz_arrays()
    np.savez(tmp_path / "sbj_1.npz", **arrays)
    rec = READERS["god_npz"].read_subject({"subject": tmp_path / "sbj_1.npz"}, stimuli)
    assert rec.fmri.shape == (45, V) and rec.fmri.dtype == np.float32
    np.testing.assert_allclose(rec.fmri[10:], arrays["arr_1"].astype(np.float32))
    assert rec.datatype.tolist() == [1] * 10 + [2] * 35
    assert rec.image_index.tolist() == arrays["arr_3"].tolist() + arrays["arr_4"].tolist()
    assert (rec.run == 0).all() and rec.prenormalized
    assert np.isnan(rec.voxel_xyz).all() and rec.voxel_xyz.shape == (V, 3)
    np.testing.assert_allclose(rec.noise_ceiling, arrays["arr_5"])
    assert set(rec.rois) == {"V1", "V4", "VC"} and rec.rois["V1"].dtype == bool
    assert rec.attrs["test_avg_matches"] is True
    arrays["arr_2"] = arrays["arr_2"] + 0.5  # some releases differ: recorded, not fatal
    np.savez(tmp_path / "sbj_2.npz", **arrays)
    assert read_god_npz(tmp_path / "sbj_2.npz", stimuli).attrs["test_avg_matches"] is False


@pytest.mark.parametrize("change, pattern", [
    (dict(arr_3=np.arange(9)), r"arr_3 has 9 labels for 10"),
    (dict(arr_4=np.repeat(np.arange(5), 7) + 1), r"arr_4 labels span 1..5, expected 0..4"),
    (dict(arr_1=np.zeros((35, V + 1))), r"arr_0 \(10, 40\) and arr_1 \(35, 41\)"),
    (dict(V1=np.ones(V - 1, bool)), r"ROI mask 'V1' has shape \(39,\)"),
    (dict(V1=np.full(V, 2.0)), r"ROI mask 'V1' has dtype float64"),
    (dict(arr_5=np.ones(3)), r"arr_5 .* 3 values for 40"),
])
def test_read_god_npz_errors(stimuli, tmp_path, change, pattern):
    np.savez(tmp_path / "sbj_3.npz", **{**_npz_arrays(), **change})
    with pytest.raises(InputError, match=r"sbj_3\.npz.*" + pattern):
        read_god_npz(tmp_path / "sbj_3.npz", stimuli)


def test_read_god_npz_missing_or_corrupt(stimuli, tmp_path):
    with pytest.raises(InputError, match="sbj_4.npz"):
        read_god_npz(tmp_path / "sbj_4.npz", stimuli)
    (tmp_path / "sbj_4.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(InputError, match="sbj_4.npz.*not a readable"):
        read_god_npz(tmp_path / "sbj_4.npz", stimuli)
    arrays = _npz_arrays()
    del arrays["arr_4"]
    np.savez(tmp_path / "sbj_5.npz", **arrays)
    with pytest.raises(InputError, match=r"sbj_5.npz.*'arr_4' missing"):
        read_god_npz(tmp_path / "sbj_5.npz", stimuli)


def test_a_file_without_test_samples_says_so(stimuli, tmp_path):
    datatype, run, label, _, voxels, _ = _design()
    keep = datatype == 1
    b = BDataBuilder()
    b.add("VoxelData", voxels[keep])
    for key, col in (("DataType", datatype[keep]), ("Run", run[keep]), ("stimulus_id", label[keep])):
        b.add(key, col)
    b.save(tmp_path / "trainonly.h5")
    with pytest.raises(InputError, match=r"trainonly\.h5: no test samples \(DataType 2\).*found DataType values \[1\]"):
        read_god_bdata(tmp_path / "trainonly.h5", stimuli)


def test_id_messages_print_plain_numbers(stimuli, tmp_path):
    path = _write_subject(tmp_path / "Subject3.h5", corrupt_label=2100000.00002)
    with pytest.raises(InputError) as info:
        read_god_bdata(path, stimuli)
    assert "np.float64" not in str(info.value) and "2100000.00002" in str(info.value)
