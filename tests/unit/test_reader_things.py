"""THINGS-fMRI reader: the betas_csv tables written by the things_layout writers (and, where PyTables
is installed, by pandas itself), the split, catch trials, ROI unions and hemispheres, the pickled
column index that is never unpickled, and one line per bad input."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from fmrirecon.config import _check_file_rois
from fmrirecon.data import masking, prepared, steps
from fmrirecon.data.readers import READERS
from fmrirecon.data.readers import things_fmri as things
from fmrirecon.data.readers.base import TEST, TRAIN
from fmrirecon.data.readers.things_files import open_response_store, read_responses
from fmrirecon.data.simulation import things_layout as layout
from fmrirecon.data.simulation.god_layouts import SimStimuli, SimSubject
from fmrirecon.errors import InputError
from PIL import Image

PX = 16
CONCEPTS = ["dog", "mango", "spatula", "panda"]  # training concepts, two images each
TEST_IMAGES = ["candelabra_14s.jpg", "bike_06s.jpg", "acorn_03s.jpg"]


def _image(name: str) -> np.ndarray:
    seed = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") % 2**32
    return np.random.default_rng(seed).integers(0, 256, (PX, PX, 3), dtype=np.uint8)


def _write_images(root: Path, stimuli):
    for stim in stimuli:
        d = root / "object_images" / stim.rsplit("_", 1)[0]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(stim)).save(d / stim, format="png")  # decoded by content, lossless here


def _design(seed: int):
    """One subject's table: 8 training images once, 3 test images × 4 repeats, 3 catch trials, in a
    seeded order over 2 sessions × 2 runs; returns (rows, values (V, T))."""
    rng = np.random.default_rng(seed)
    train = [f"{c}_{k:02d}s.jpg" for c in CONCEPTS for k in (1, 12)]
    trials = [("train", s) for s in train] + [("test", s) for s in TEST_IMAGES * 4] + [("catch", "catch008.jpg")] * 3
    trials = [trials[i] for i in rng.permutation(len(trials))]
    rows = [(k, 1 + t // 12, 1 + (t // 6) % 2, s, s.rsplit("_", 1)[0] if k != "catch" else "") for t, (k, s) in enumerate(trials)]
    return rows, np.round(rng.normal(size=(30, len(rows))), 3).astype(np.float32)


def _voxels(n: int = 30):
    """xyz (x < 15 left), ROI columns: voxels 0-5 V1, 6-9 hV4, 10-17 FFA, 18-23 LOC, 24-29 none."""
    xyz = np.stack([np.arange(n) % 30, np.arange(n) // 3, np.full(n, 7)], axis=1)
    v = np.arange(n)
    left = xyz[:, 0] < 15
    rois = {"V1": v < 6, "hV4": (v >= 6) & (v < 10), "lFFA": (v >= 10) & (v < 18) & left,
            "rFFA": (v >= 10) & (v < 18) & ~left, "lLOC": (v >= 18) & (v < 24) & left,
            "rLOC": (v >= 18) & (v < 24) & ~left, "glasser-V1": v < 3}  # fmt: skip
    return xyz, rois


def _write_subject(root: Path, label: str, seed: int, **store):
    rows, values = _design(seed)
    betas = root / "betas_csv"
    layout.write_stimulus_table(betas / f"{label}_StimulusMetadata.csv", *zip(*rows), subject_id=int(label[-2:]))
    xyz, rois = _voxels()
    ids = np.arange(len(values)) * 2 + 7
    layout.write_voxel_table(betas / f"{label}_VoxelMetadata.csv", ids, xyz, rois,
                             nc_testset=np.linspace(0, 100, len(values)))  # fmt: skip
    layout.write_response_data(betas / f"{label}_ResponseData.h5", ids, values, **store)
    return rows, values


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("things")
    design = {"sub-01": _write_subject(root, "sub-01", 1),
              "sub-02": _write_subject(root, "sub-02", 2, voxel_id_first=True, split=11)}  # fmt: skip
    _write_images(root, {s for rows, _ in design.values() for k, _, _, s, _ in rows if k != "catch"})
    (root / "concepts.tsv").write_text("Word\tuniqueID\tDefinition (from WordNet, Google, or Wikipedia)\n" + "".join(
        f"{c.replace('_', ' ')}\t{c}\tdefinition of {c}\n" for c in CONCEPTS + ["candelabra", "bike", "acorn"]))
    return root, design


@pytest.fixture
def copy(tmp_path, tree):
    shutil.copytree(tree[0], tmp_path / "t")
    return tmp_path / "t"


def _entry(root, subjects=("1", "02"), **options):
    return {"name": "things", "format": "things_fmri", "path": str(root), "subjects": list(subjects),
            "rois": ["VC"], "options": options, "unpaired_images": "", "gallery_images": ""}  # fmt: skip


def _one_line(info, *parts):
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    for part in parts:
        assert part in message, message


# -- the tree as the layout writes it ---------------------------------------------------------------


def test_stimuli_split_sorted_by_name_with_captions(tree):
    root, _ = tree
    st = things.read_stimuli(_entry(root, concepts_tsv="concepts.tsv"), str(root), PX)
    train = sorted(f"{c}_{k:02d}s" for c in CONCEPTS for k in (1, 12))
    assert st.train.names.tolist() == train and st.test.names.tolist() == ["acorn_03s", "bike_06s", "candelabra_14s"]
    for part in (st.train, st.test):
        expected = np.stack([_image(n + ".jpg") for n in part.names])
        assert np.array_equal(part.images, expected)  # 16 px PNG content: centre crop/resize is the identity
    concepts = sorted(set(CONCEPTS) | {"acorn", "bike", "candelabra"})
    assert st.test.category.tolist() == [concepts.index(c) for c in ("acorn", "bike", "candelabra")]
    assert st.train.captions[0] == ["a photo of dog", "definition of dog"]
    assert np.isnan(st.train.stimulus_id).all()


def test_subject_rows_catch_dropped_blocks_and_voxels(tree):
    root, design = tree
    st = things.read_stimuli(_entry(root), str(root), PX)
    for label in ("sub-01", "sub-02"):  # sub-02: voxel_id block first, trials split in two float blocks
        rows, values = design[label]
        rec = things.read_subject(things.subject_inputs(_entry(root), str(root), label), st, {})
        kept = [t for t, r in enumerate(rows) if r[0] != "catch"]
        assert len(kept) == len(rows) - 3 and rec.attrs["n_catch_trials"] == 3
        in_roi = np.arange(24)  # voxels 24-29 are in no published ROI column (only voxels: rois are read)
        assert np.array_equal(rec.fmri, values[np.ix_(in_roi, kept)].T)
        names = {TRAIN: st.train.names.tolist(), TEST: st.test.names.tolist()}
        for i, t in enumerate(kept):
            assert rec.datatype[i] == (TRAIN if rows[t][0] == "train" else TEST)
            assert names[rec.datatype[i]][rec.image_index[i]] == rows[t][3][:-4]
        pairs = [(rows[t][1], rows[t][2]) for t in kept]
        assert rec.run.tolist() == [sorted(set(pairs)).index(p) + 1 for p in pairs]
        assert np.array_equal(rec.voxel_xyz, _voxels()[0][:24])
        assert np.allclose(rec.noise_ceiling, np.sqrt(np.linspace(0, 100, 30)[:24] / 100), atol=1e-6)
    everything = things.read_subject(things.subject_inputs(_entry(root), str(root), "sub-01"), st, {"voxels": "all"})
    assert everything.fmri.shape[1] == 30


def test_roi_columns_unions_and_hemispheres(tree):
    root, _ = tree
    st = things.read_stimuli(_entry(root), str(root), PX)
    rec = things.read_subject(things.subject_inputs(_entry(root), str(root), "1"), st, {"voxels": "all"})
    xyz = _voxels()[0]
    v = np.arange(30)
    assert np.array_equal(rec.rois["FFA"], (v >= 10) & (v < 18))
    assert np.array_equal(rec.rois["lFFA"], (v >= 10) & (v < 18) & (xyz[:, 0] < 15))
    assert np.array_equal(rec.rois["V4"], rec.rois["hV4"]) and rec.rois["hV4"].sum() == 4
    assert np.array_equal(rec.rois["early"], v < 10) and np.array_equal(rec.rois["LVC"], v < 6)
    assert np.array_equal(rec.rois["HVC"], (v >= 10) & (v < 24)) and np.array_equal(rec.rois["VC"], v < 24)
    assert not rec.rois["PPA"].any() and not rec.rois["LO1prf"].any() and "glasserV1" not in rec.rois
    assert set(things.ROIS) <= set(rec.rois)


def test_dag_contract_masking_averages_the_test_repeats(tree, tmp_path):
    root = tree[0]
    st = things.read_stimuli(_entry(root), str(root), PX)
    prepared.write_images_file(tmp_path / "images.h5", st, {})
    stored = prepared.read_images_file(tmp_path / "images.h5", with_images=False)
    rec = things.read_subject(things.subject_inputs(_entry(root), str(root), "1"), stored, {})
    z = masking.normalise(rec.fmri.copy(), rec.run, rec.datatype == TRAIN, "run")
    out = masking.prepare_subject(rec, "FFA", {}, "run", n_test_images=3, roster=things.ROIS)
    ffa = np.flatnonzero(_voxels()[1]["lFFA"] | _voxels()[1]["rFFA"])
    test = rec.datatype == TEST
    for row in range(3):  # each test image: the mean of its 4 normalised repeats
        sel = test & (rec.image_index == row)
        assert sel.sum() == 4
        assert np.allclose(out["test/fmri"][row], z[sel][:, ffa].mean(0), atol=1e-5)
    assert out["train/fmri"].shape == (8, len(ffa))


def test_inputs_name_the_files_rules_track(tree):
    root, _ = tree
    files = things.subject_inputs(_entry(root), str(root), "2")
    assert files == {"subject": f"{root}/betas_csv/sub-02_ResponseData.h5",
                     "stimulus_table": f"{root}/betas_csv/sub-02_StimulusMetadata.csv",
                     "voxel_table": f"{root}/betas_csv/sub-02_VoxelMetadata.csv"}  # fmt: skip
    inputs = things.image_inputs(_entry(root, concepts_tsv="concepts.tsv"), str(root))
    assert inputs == [f"{root}/betas_csv/sub-01_StimulusMetadata.csv", f"{root}/betas_csv/sub-02_StimulusMetadata.csv",
                      f"{root}/object_images", f"{root}/concepts.tsv"]  # fmt: skip
    assert READERS["things_fmri"].published_dataset == "THINGS-fMRI" and READERS["things_fmri"].stimuli_need_subjects


# -- the pickles: axis0 is never read, block labels only through the restricted parser -------------

_RAN = []


def _record():
    _RAN.append(True)
    return ["voxel_id"]


class _Bomb:
    def __reduce__(self):
        return (_record, ())


def test_axis0_is_never_unpickled(copy):
    payload = pickle.dumps(_Bomb())
    rows, values = _design(1)
    ids = np.arange(30) * 2 + 7
    path = layout.write_response_data(copy / "betas_csv/sub-01_ResponseData.h5", ids, values, axis0=payload)
    assert pickle.loads(payload) == ["voxel_id"] and _RAN == [True]  # it does run when unpickled
    _RAN.clear()
    st = things.read_stimuli(_entry(copy), str(copy), PX)
    rec = things.read_subject(things.subject_inputs(_entry(copy), str(copy), "1"), st, {})
    assert _RAN == [] and rec.fmri.shape == (len(rows) - 3, 24)
    assert path.is_file()


def test_malicious_block_labels_are_refused_without_running(copy):
    rows, values = _design(1)
    path = copy / "betas_csv/sub-01_ResponseData.h5"
    layout.write_response_data(path, np.arange(30) * 2 + 7, values)
    import h5py

    with h5py.File(path, "r+") as f:
        del f["ResponseData/block0_items"]
        ds = f.create_dataset("ResponseData/block0_items", (1,), dtype=h5py.vlen_dtype(np.uint8))
        ds[0] = np.frombuffer(pickle.dumps(_Bomb()), np.uint8)
    with pytest.raises(InputError) as info:
        open_response_store(path, len(rows), Path("table.csv"))
    _one_line(info, "sub-01_ResponseData.h5", "block0_items")
    assert _RAN == []


def test_a_store_written_by_pandas_itself(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    rng = np.random.default_rng(5)
    values = rng.normal(size=(6, 9)).astype(np.float32)
    frame = pd.concat([pd.DataFrame({"voxel_id": np.arange(6) + 40}), pd.DataFrame(values, columns=range(9))], axis=1)
    frame[4] = frame[4].astype(np.float64)  # a second float block
    frame.to_hdf(tmp_path / "r.h5", key="ResponseData", mode="w")
    store = open_response_store(tmp_path / "r.h5", 9, Path("table.csv"))
    assert store.voxel_id.tolist() == list(range(40, 46))
    assert np.array_equal(read_responses(store, np.arange(6), np.arange(9)), values.T)
    layout.write_response_data(tmp_path / "w.h5", np.arange(6) + 40, values, split=4)
    back = pd.read_hdf(tmp_path / "w.h5")  # and pandas reads what the layout writes
    assert back.columns.tolist() == ["voxel_id", *range(9)] and back["voxel_id"].tolist() == list(range(40, 46))
    assert np.array_equal(back[list(range(9))].to_numpy(np.float32), values)


# -- the simulated layout ------------------------------------------------------------------------


def test_layout_writes_the_god_experiment_readably(tmp_path):
    rng = np.random.default_rng(3)
    names = ("red striped star", "blue disc", "green dotted square", "pink ring")
    train_names = np.array([f"n{2000000 + 37117 * c:08d}_{k}" for c in (0, 1) for k in (123, 17)])  # GOD order
    test_names = np.array([f"n{2000000 + 37117 * c:08d}_{k}" for c, k in ((2, 5), (3, 99))])
    stimuli = SimStimuli(rng.integers(0, 256, (4, PX, PX, 3), dtype=np.uint8), train_names, np.array([0, 0, 1, 1]),
                         rng.integers(0, 256, (2, PX, PX, 3), dtype=np.uint8), test_names, np.array([2, 3]), names)
    datatype = np.array([1] * 4 + [2] * 6 + [3] * 2)
    image_row = np.array([2, 0, 3, 1, 0, 1, 1, 0, 0, 1, 0, 1])
    roi = np.array(["V1", "V4", "FFA", "FFA", "PPA", "LOC", "OPA", "XYZ"])
    xyz = np.stack([np.array([-3.0, 3, -6, 6, -3, 0, 3, -9]), np.zeros(8), np.zeros(8)], axis=1)
    signal = rng.normal(size=(2, 8)) * np.array([0, 5, 5, 5, 5, 5, 5, 5])
    raw = rng.normal(size=(12, 8))
    raw[4:10] += signal[image_row[4:10]]
    sub = SimSubject("1", raw, datatype, image_row, np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]), roi, xyz, 3, 2,
                     train_names, test_names)  # fmt: skip
    layout.write_stimuli(tmp_path, stimuli)
    layout.write_subject(tmp_path, sub)
    view = layout.reader_view({"name": "s", "format": "simulated", "read_as": "things_fmri", "subjects": ["1"],
                               "rois": ["VC"], "unpaired_images": "", "gallery_images": "", "options": {}},
                              str(tmp_path.parent), {"voxels": {"V1": 1, "XYZ": 1}})  # fmt: skip
    assert view["options"]["voxels"] == "all" and view["path"].endswith("/things_fmri")
    entry = {**view, "path": str(tmp_path), "unpaired_images": ""}  # no unpaired folder here
    st = things.read_stimuli(entry, str(tmp_path), PX)
    assert st.train.names.tolist() == train_names.tolist() and st.test.names.tolist() == test_names.tolist()
    assert (tmp_path / "object_images/red_striped_star" / f"{train_names[0]}.jpg").is_file()
    assert np.abs(st.train.images.astype(int) - stimuli.train_images).mean() < 40  # JPEG of noise, q95
    assert st.train.captions[0] == ["a photo of red striped star", "a red striped star on a textured background"]
    rec = things.read_subject(things.subject_inputs(entry, str(tmp_path), "1"), st, entry["options"])
    assert np.array_equal(rec.fmri, raw[:10].astype(np.float32))  # imagery left out, voxels in simulator order
    assert rec.datatype.tolist() == datatype[:10].tolist() and rec.image_index.tolist() == image_row[:10].tolist()
    assert rec.run.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert rec.rois["hV4"].tolist() == (roi == "V4").tolist() and rec.rois["FFA"].tolist() == (roi == "FFA").tolist()
    assert rec.rois["lFFA"].tolist() == [False, False, True, False, False, False, False, False]
    assert rec.rois["rLOC"][5] and rec.rois["rTOS"][6] and not rec.rois["VC"][7]  # x = 0 is right; XYZ unmapped
    assert rec.noise_ceiling[0] < 0.5 < rec.noise_ceiling[1:7].min()  # voxel 0 has no signal
    assert rec.voxel_xyz[:, 0].tolist() == [2, 4, 1, 5, 2, 3, 4, 0]  # grid indices: (x + 9 mm) / 3 mm


# -- bad input -------------------------------------------------------------------------------------


def _break(root: Path, what: str):
    betas = root / "betas_csv"
    values = _design(1)[1]
    ids = np.arange(30) * 2 + 7
    if what == "missing store":
        (betas / "sub-01_ResponseData.h5").unlink()
    elif what == "columns":
        layout.write_response_data(betas / "sub-01_ResponseData.h5", ids, values[:, :-1])
    elif what == "roi column":
        xyz, rois = _voxels()
        cols = tuple(c for c in things.ROI_COLUMNS if c != "lPPA")
        layout.write_voxel_table(betas / "sub-01_VoxelMetadata.csv", ids, xyz, rois, columns=cols)
    elif what == "voxel ids":
        layout.write_response_data(betas / "sub-01_ResponseData.h5", ids[::-1], values)
    elif what == "voxel count":
        layout.write_response_data(betas / "sub-01_ResponseData.h5", ids[:-1], values[:-1])
    elif what == "not hdf5":
        (betas / "sub-01_ResponseData.h5").write_text("voxel_id,0,1\n")
    elif what == "table format":
        import h5py

        with h5py.File(betas / "sub-01_ResponseData.h5", "r+") as f:
            del f["ResponseData"].attrs["pandas_type"]
            f["ResponseData"].attrs["pandas_type"] = "frame_table"
    elif what == "trial type":
        text = (betas / "sub-01_StimulusMetadata.csv").read_text().replace("train,", "training,", 1)
        (betas / "sub-01_StimulusMetadata.csv").write_text(text)
    elif what == "roi value":
        xyz, rois = _voxels()
        layout.write_voxel_table(betas / "sub-01_VoxelMetadata.csv", ids, xyz, {**rois, "V1": rois["V1"] * (1 + (ids == 9))})


@pytest.mark.parametrize("what, parts", [
    ("missing store", ["ResponseData file not found", "sub-01_ResponseData.h5"]),
    ("columns", ["sub-01_ResponseData.h5: 22 trial columns", "sub-01_StimulusMetadata.csv has 23 rows"]),
    ("roi column", ["sub-01_VoxelMetadata.csv: no ROI column(s) ['lPPA']"]),
    ("voxel ids", ["sub-01_ResponseData.h5: voxel_id does not match", "row 0 has voxel_id 65 there and 7 in"]),
    ("voxel count", ["sub-01_ResponseData.h5: voxel_id does not match", "29 voxels there, 30 rows in"]),
    ("not hdf5", ["sub-01_ResponseData.h5: not a readable HDF5 file"]),
    ("table format", ["sub-01_ResponseData.h5", "'frame_table'", "fixed"]),
    ("trial type", ["sub-01_StimulusMetadata.csv:", "trial_type 'training'"]),
    ("roi value", ["sub-01_VoxelMetadata.csv:3: ROI column 'V1' is 2.0, expected 0 or 1"]),
])  # fmt: skip
def test_bad_subject_files(copy, what, parts, tmp_path):
    st = things.read_stimuli(_entry(copy), str(copy), PX)
    prepared.write_images_file(tmp_path / "images.h5", st, {})
    _break(copy, what)
    files = things.subject_inputs(_entry(copy), str(copy), "1")
    out = tmp_path / "out" / "data.h5"
    with pytest.raises(InputError) as info:  # through the rule's step: one line, no output
        steps.mask_roi({"reader": "things_fmri", "files": files, "options": {}}, str(tmp_path / "images.h5"), "1",
                       "VC", {}, "run", "metadata", str(out), "things", "hash")  # fmt: skip
    _one_line(info, *parts)
    assert not out.exists() and not (out.parent.exists() and os.listdir(out.parent))


def test_bad_stimulus_tree(copy):
    shutil.rmtree(copy / "object_images/dog")
    with pytest.raises(InputError) as info:
        things.read_stimuli(_entry(copy), str(copy), PX)
    _one_line(info, "THINGS image not found", "object_images/dog/dog_01s.jpg")
    with pytest.raises(InputError) as info:
        things.read_stimuli(_entry(copy, concepts_tsv="nope.tsv"), str(copy), PX)
    _one_line(info, "concepts TSV not found", "nope.tsv")


@pytest.mark.parametrize("change, parts", [
    ({"options": {"voxel": "all"}}, ["datasets[0].options", "unknown key(s) ['voxel']"]),
    ({"options": {"voxels": "some"}}, ["datasets[0].options.voxels", "rois", "all"]),
    ({"roi_source": "nifti"}, ["datasets[0].roi_source", "VoxelMetadata"]),
    ({"subjects": ["1", "01"]}, ["datasets[0].subjects", "['1', '01'] name the same subject"]),
    ({"subjects": ["one"]}, ["datasets[0].subjects", "not a THINGS-fMRI subject"]),
])  # fmt: skip
def test_check_refuses_bad_settings(tree, change, parts):
    with pytest.raises(InputError) as info:
        things.check({**_entry(tree[0]), **change}, "datasets[0]")
    _one_line(info, *parts)


def test_config_rois_checked_against_the_voxel_table_header(tree):
    root, _ = tree
    reader = READERS["things_fmri"]
    _check_file_rois({**_entry(root), "rois": ["VC", "lFFA", "LO1prf", "early", "mine"]}, "datasets[0]", reader,
                     {"mine": ["V1", "rPPA"]})  # fmt: skip
    with pytest.raises(InputError) as info:
        _check_file_rois({**_entry(root), "rois": ["FFAx"]}, "datasets[0]", reader, {})
    _one_line(info, "datasets[0].rois", "'FFAx'", "sub-01_VoxelMetadata.csv")
