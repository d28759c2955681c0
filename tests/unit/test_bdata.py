"""BData writer/reader: round trips with bdpy, determinism, MATLAB-style names, errors."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

bdpy = pytest.importorskip("bdpy")

from fmrirecon.data.bdata import BDataBuilder, BDataFile  # noqa: E402
from fmrirecon.errors import InputError  # noqa: E402

N, V = 60, 40


def _content(seed=0):
    rng = np.random.default_rng(seed)
    voxels = rng.standard_normal((N, V))
    datatype = np.repeat([1, 2, 3], [10, 30, 20]).astype(float)
    run = np.tile([1, 2], N // 2).astype(float)
    stim = 1518878.0 + rng.integers(0, 100, N) / 1e6
    xyz = rng.uniform(-60, 60, (V, 3))
    roi = {"ROI_V1": np.arange(V) < 10, "ROI_V2": (np.arange(V) >= 10) & (np.arange(V) < 25),
           "ROI_VC": np.ones(V, bool)}
    return voxels, datatype, run, stim, xyz, roi


def _build_ours(labels_first=False, seed=0) -> BDataBuilder:
    voxels, datatype, run, stim, xyz, roi = _content(seed)
    b = BDataBuilder()
    if labels_first:
        b.add("DataType", datatype)
        b.add("Run", run)
    b.add("VoxelData", voxels)
    if not labels_first:
        b.add("DataType", datatype)
        b.add("Run", run)
    b.add("stimulus_id", stim)
    for axis, col in zip("xyz", xyz.T):
        b.add_metadata(f"voxel_{axis}", col, f"Voxel {axis} coordinate", where="VoxelData")
    for key, mask in roi.items():
        b.add_metadata(key, mask.astype(float), f"1 = ROI {key[4:]}", where="VoxelData")
    b.add_vmap("DataType", {1: "training", 2: "test", 3: "imagery"})
    return b


def _build_bdpy(labels_first: bool):
    voxels, datatype, run, stim, xyz, roi = _content()
    bd = bdpy.BData()
    if labels_first:
        bd.add(datatype, "DataType")
        bd.add(run, "Run")
    bd.add(voxels, "VoxelData")
    if not labels_first:
        bd.add(datatype, "DataType")
        bd.add(run, "Run")
    bd.add(stim, "stimulus_id")
    for axis, col in zip("xyz", xyz.T):
        bd.add_metadata(f"voxel_{axis}", col, f"Voxel {axis} coordinate", where="VoxelData")
    for key, mask in roi.items():
        bd.add_metadata(key, mask.astype(float), f"1 = ROI {key[4:]}", where="VoxelData")
    bd.add_vmap("DataType", {1.0: "training", 2.0: "test", 3.0: "imagery"})
    return bd


@pytest.mark.parametrize("labels_first", [False, True])
def test_bdpy_file_read_by_ours(tmp_path, labels_first):
    path = tmp_path / "bdpy.h5"
    _build_bdpy(labels_first).save(str(path))
    voxels, datatype, run, stim, xyz, roi = _content()
    f = BDataFile.open(path)
    assert f.n_samples == N
    assert f.n_columns == V + 3
    assert set(f.keys) >= {"VoxelData", "DataType", "Run", "stimulus_id", "ROI_V1", "voxel_x"}
    np.testing.assert_array_equal(f.select("VoxelData"), voxels)
    np.testing.assert_array_equal(f.select("DataType")[:, 0], datatype)
    np.testing.assert_array_equal(f.select("stimulus_id")[:, 0], stim)
    np.testing.assert_array_equal(f.select("ROI_V1"), voxels[:, roi["ROI_V1"]])
    np.testing.assert_array_equal(f.get_metadata("voxel_y", where="VoxelData"), xyz[:, 1])
    assert np.isnan(f.get_metadata("voxel_y")).sum() == 3
    assert f.column_mask("DataType").sum() == 1
    assert f.column_mask("DataType")[0] == labels_first
    assert f.vmap("DataType") == {1.0: "training", 2.0: "test", 3.0: "imagery"}
    assert f.descriptions["VoxelData"] == "1 = VoxelData"


@pytest.mark.parametrize("labels_first", [False, True])
def test_our_file_read_by_bdpy(tmp_path, labels_first):
    path = tmp_path / "ours.h5"
    _build_ours(labels_first).save(path)
    voxels, datatype, run, stim, xyz, roi = _content()
    bd = bdpy.BData(str(path))
    np.testing.assert_array_equal(bd.select("ROI_VC"), voxels)
    np.testing.assert_array_equal(bd.select("ROI_V1 | ROI_V2"),
                                  voxels[:, roi["ROI_V1"] | roi["ROI_V2"]])
    np.testing.assert_array_equal(bd.get_metadata("voxel_x", where="VoxelData"), xyz[:, 0])
    np.testing.assert_array_equal(bd.get("DataType")[:, 0], datatype)
    np.testing.assert_array_equal(bd.select("stimulus_id")[:, 0], stim)
    assert bd.get_vmap("DataType") == {1.0: "training", 2.0: "test", 3.0: "imagery"}
    assert bd.metadata.description[bd.metadata.key.index("Run")] == "1 = Run"


def test_metadata_matches_bdpy_exactly(tmp_path):
    _build_ours(labels_first=True).save(tmp_path / "ours.h5")
    _build_bdpy(labels_first=True).save(str(tmp_path / "bdpy.h5"))
    with h5py.File(tmp_path / "ours.h5") as a, h5py.File(tmp_path / "bdpy.h5") as b:
        np.testing.assert_array_equal(a["dataset"][()], b["dataset"][()])
        np.testing.assert_array_equal(a["metadata/key"][()], b["metadata/key"][()])
        np.testing.assert_array_equal(a["metadata/description"][()], b["metadata/description"][()])
        np.testing.assert_array_equal(a["metadata/value"][()], b["metadata/value"][()])
        assert sorted(a["vmap/DataType"]) == sorted(b["vmap/DataType"])


def test_saves_are_byte_identical_and_atomic(tmp_path):
    _build_ours().save(tmp_path / "a.h5")
    time.sleep(1.1)  # HDF5 timestamps have 1 s resolution
    _build_ours().save(tmp_path / "b.h5")
    _build_ours(seed=1).save(tmp_path / "b.h5")  # overwrite in place ...
    _build_ours().save(tmp_path / "b.h5")  # ... and back
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]  # no temp files left


def test_builder_extends_existing_key_like_bdpy(tmp_path):
    b = BDataBuilder(n_samples=4)
    b.add("VoxelData", np.ones((4, 2)))
    b.add("Label", np.arange(4))
    b.add("VoxelData", np.zeros((4, 3)))
    b.save(tmp_path / "x.h5")
    f = BDataFile.open(tmp_path / "x.h5")
    assert f.column_mask("VoxelData").tolist() == [True, True, False, True, True, True]
    np.testing.assert_array_equal(f.select("VoxelData"), np.c_[np.ones((4, 2)), np.zeros((4, 3))])
    with pytest.raises(ValueError):
        b.add("Bad", np.ones(5))


def test_matlab_style_names_and_vlen_keys(tmp_path):
    voxels, datatype, *_ = _content()
    dataset = np.c_[datatype, voxels]
    keys = ["DataType", "VoxelData", "ROI_V1"]
    value = np.full((3, V + 1), np.nan)
    value[0, 0] = 1
    value[1, 1:] = 1
    value[2, 1:] = (np.arange(V) < 5).astype(float)
    path = tmp_path / "matlab.h5"
    with h5py.File(path, "w") as f:
        f["dataSet"] = dataset
        f.create_dataset("metaData/key", data=keys, dtype=h5py.string_dtype())
        f.create_dataset("metaData/description", data=["1 = DataType", "1 = VoxelData",
                                                       "1 = ROI V1"], dtype=h5py.string_dtype())
        f["metaData/value"] = value
    ours = BDataFile.open(path)
    assert ours.keys == keys
    np.testing.assert_array_equal(ours.select("VoxelData"), voxels)
    np.testing.assert_array_equal(ours.select("ROI_V1"), voxels[:, :5])
    np.testing.assert_array_equal(bdpy.BData(str(path)).select("ROI_V1"), voxels[:, :5])


def test_transposed_matlab_layout(tmp_path):
    """MATLAB v7.3: (n_columns, n_samples), (n_columns, n_keys) and cellstr keys as references."""
    voxels = np.arange(6 * 4, dtype=float).reshape(6, 4)
    value = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=float)  # VoxelData, ROI_A
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f["dataSet"] = voxels.T
        refs = []
        for i, key in enumerate(["VoxelData", "ROI_A"]):  # cellstr: refs to uint16 char arrays
            chars = f.create_dataset(f"#refs#/{i}", data=np.array([[ord(c)] for c in key],
                                                                    dtype=np.uint16))
            refs.append(chars.ref)
        f.create_dataset("metaData/key", data=np.array(refs, dtype=h5py.ref_dtype))
        f["metaData/value"] = value.T
    ours = BDataFile.open(path)
    assert ours.keys == ["VoxelData", "ROI_A"]
    assert ours.n_samples == 6
    np.testing.assert_array_equal(ours.select("ROI_A"), voxels[:, :2])


def test_lazy_select_reads_bounding_range(tmp_path):
    _build_ours(labels_first=True).save(tmp_path / "x.h5")
    f = BDataFile.open(tmp_path / "x.h5")
    voxels, *_ = _content()
    v1 = np.arange(V) < 10
    np.testing.assert_array_equal(f.select("ROI_V1"), voxels[:, v1])
    assert f.select("ROI_V1").dtype == np.float64


# -- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found.*nope.h5"):
        BDataFile.open(tmp_path / "nope.h5")


def test_random_bytes_file(tmp_path):
    path = tmp_path / "random.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="random.h5.*not a readable"):
        BDataFile.open(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "trunc.h5"
    _build_ours().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="trunc.h5"):
        f = BDataFile.open(path)
        f.select("VoxelData")


def test_missing_dataset_group(tmp_path):
    path = tmp_path / "nodata.h5"
    with h5py.File(path, "w") as f:
        f["metadata/key"] = np.array([b"VoxelData"])
        f["metadata/value"] = np.ones((1, 3))
    with pytest.raises(InputError, match="nodata.h5.*/dataset"):
        BDataFile.open(path)


def test_column_count_mismatch(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["dataset"] = np.ones((5, 7))
        f["metadata/key"] = np.array([b"VoxelData"])
        f["metadata/value"] = np.ones((1, 3))
    with pytest.raises(InputError, match="bad.h5.*3 columns"):
        BDataFile.open(path)


def test_missing_key_lists_available(tmp_path):
    _build_ours().save(tmp_path / "x.h5")
    f = BDataFile.open(tmp_path / "x.h5")
    with pytest.raises(InputError, match=r"x.h5.*'ROI_FFA' not found.*VoxelData.*ROI_VC"):
        f.column_mask("ROI_FFA")
    with pytest.raises(InputError, match="no vmap for key 'Run'"):
        f.vmap("Run")
    with pytest.raises(InputError, match="ROI_FFA"):
        f.get_metadata("voxel_x", where="ROI_FFA")
