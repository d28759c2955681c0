"""Algonauts 2023 reader: published layout written by write_algonauts_tree, split rule, ROIs, labels,
the restricted unpickler of the mapping files, and one line per bad input."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from fmrirecon.config import _check_file_rois
from fmrirecon.data import masking, prepared
from fmrirecon.data.readers import algonauts2023 as algo
from fmrirecon.data.readers.base import TEST, TRAIN
from fmrirecon.data.readers.images import square_resize
from fmrirecon.data.safe_pickle import load_pickled, loads
from fmrirecon.data.simulation.algonauts_layout import (
    AlgonautsSubject,
    mapping_bytes,
    write_algonauts_tree,
)
from fmrirecon.errors import InputError
from PIL import Image

PX = 16
#: the released mapping files' content (label 0 "Unknown" included, as published)
MAPPINGS = {
    "prf-visualrois": {0: "Unknown", 1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d", 7: "hV4"},
    "floc-bodies": {0: "Unknown", 1: "EBA", 2: "FBA-1", 3: "FBA-2", 4: "mTL-bodies"},
    "floc-faces": {0: "Unknown", 1: "OFA", 2: "FFA-1", 3: "FFA-2", 4: "mTL-faces", 5: "aTL-faces"},
    "floc-places": {0: "Unknown", 1: "OPA", 2: "PPA", 3: "RSC"},
    "floc-words": {0: "Unknown", 1: "OWFA", 2: "VWFA-1", 3: "VWFA-2", 4: "mfs-words", 5: "mTL-words"},
    "streams": {0: "Unknown", 1: "early", 2: "midventral", 3: "midlateral", 4: "midparietal", 5: "ventral",
                6: "lateral", 7: "parietal"},
}  # fmt: skip
SHARED = [5, 17, 230, 4000, 12345, 30000, 55555, 72999]
IDS = {
    "subj01": sorted(SHARED + [1, 2, 3, 88, 901, 1500, 2600, 7000, 9100, 20000, 41000, 66000]),  # 20, as published
    "subj02": [64000, 5, 33, 72999, 4000, 101, 17, 30000, 202, 55555, 303, 12345, 404, 230, 505, 606,
               707, 808, 909, 1001, 1101, 1201, 1301, 1401],  # 24, rows not in NSD order
}  # fmt: skip
VERTS = {"subj01": (130, 170), "subj02": (120, 150)}
CATEGORIES = ["person", "dog", "sky-other-merged"]
FSAVERAGE = 1000


def _image(nsd: int) -> np.ndarray:
    return np.random.default_rng(nsd).integers(0, 256, (PX, PX, 3), dtype=np.uint8)


def _subject(folder: str) -> AlgonautsSubject:
    rng = np.random.default_rng(int(folder[-2:]))
    ids = IDS[folder]
    n_lh, n_rh = VERTS[folder]
    labels = {atlas: tuple(rng.integers(0, max(m) + 1, n) for n in (n_lh, n_rh)) for atlas, m in MAPPINGS.items()}
    multi_hot = np.array([[(nsd >> k) & 1 for k in range(len(CATEGORIES))] for nsd in ids])
    return AlgonautsSubject(
        nsd_ids=ids, images=np.stack([_image(i) for i in ids]),
        lh_fmri=rng.standard_normal((len(ids), n_lh)).astype(np.float32),
        rh_fmri=rng.standard_normal((len(ids), n_rh)).astype(np.float32), roi_labels=labels,
        fsaverage_vertices=tuple(np.sort(rng.choice(FSAVERAGE, n, replace=False)) for n in (n_lh, n_rh)),
        fsaverage_size=FSAVERAGE, test_nsd_ids=[70000 + int(folder[-1])], test_images=_image(7)[None],
        labels=([500_000 + i for i in ids], ["train2017" if i % 2 else "val2017" for i in ids], multi_hot),
    )  # fmt: skip


@pytest.fixture(scope="module")
def subjects():
    return {f: _subject(f) for f in IDS}


@pytest.fixture(scope="module")
def root(tmp_path_factory, subjects):
    """The tree, written once; tests that break files take ``copy``."""
    return write_algonauts_tree(tmp_path_factory.mktemp("tree") / "algonauts", subjects, MAPPINGS,
                                category_names=CATEGORIES)  # fmt: skip


@pytest.fixture
def copy(tmp_path, root):
    return Path(shutil.copytree(root, tmp_path / "algonauts"))


def _entry(root, **options):
    return {"name": "algo", "format": "algonauts2023", "path": str(root), "subjects": ["01", "02"],
            "rois": ["V1"], "roi_source": "metadata", "unlabeled_fmri": "", "unpaired_images": "",
            "options": options}  # fmt: skip


def _files(root, subject, **options):
    return algo.subject_inputs(_entry(root, **options), str(root), subject)


def _one_line(exc_info, *parts):
    message = str(exc_info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


# -- safe unpickler --------------------------------------------------------------------------------


def test_mapping_bytes_are_the_published_format_and_read_safely(tmp_path):
    raw = mapping_bytes(MAPPINGS["prf-visualrois"])
    assert raw.startswith(b"\x93NUMPY\x01\x00") and raw[128:130] == b"\x80\x03"  # v1.0 header, protocol 3
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and len(raw) == 382  # as the released file
    path = tmp_path / "mapping_prf-visualrois.npy"
    path.write_bytes(raw)
    assert load_pickled(path) == MAPPINGS["prf-visualrois"]
    assert np.load(path, allow_pickle=True).item() == MAPPINGS["prf-visualrois"]  # the devkit's reading
    new = tmp_path / "mapping_new.npy"  # today's numpy: protocol 4, numpy._core
    new.write_bytes(mapping_bytes(MAPPINGS["streams"], "np.save"))
    assert load_pickled(new) == MAPPINGS["streams"]


def test_safe_unpickler_admits_plain_data_and_numpy_numbers():
    value = {np.int64(3): "x", "list": [np.float32(1.5), (1, None, True, b"b")],
             "array": np.arange(6, dtype=">i2").reshape(2, 3, order="F")}  # fmt: skip
    got = loads(pickle.dumps(value, protocol=2))
    assert set(got) == {3, "list", "array"} and type(next(iter(got))) is int
    assert got["list"] == [1.5, (1, None, True, b"b")]
    np.testing.assert_array_equal(got["array"], value["array"])
    assert loads(pickle.dumps({1: "a"}, protocol=0)) == {1: "a"}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_safe_unpickler_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / "PWNED"
    raw = tmp_path / "mapping_evil.npy"
    raw.write_bytes(pickle.dumps({1: _Evil(marker)}))
    npy = tmp_path / "mapping_evil2.npy"  # the real format: np.save of an object array holding it
    arr = np.empty((), dtype=object)
    arr[()] = {1: _Evil(marker)}
    np.save(npy, arr, allow_pickle=True)
    for path in (raw, npy):
        with pytest.raises(InputError) as info:
            load_pickled(path)
        _one_line(info, str(path), "system is not admitted")
    assert not marker.exists()


@pytest.mark.parametrize("data, why", [
    (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval is not admitted"),
    (b"(S'ls'\nios\nsystem\n.", "opcode INST is not admitted"),
    (b"\x80\x02cnumpy\nload\nq\x00.", "numpy.load is not admitted"),
    (b"\x80\x02cnumpy\nndarray\nK\x03\x85R.", "calling numpy.ndarray is not admitted"),
    (b"\x80\x02cnumpy\ndtype\nX\x03\x00\x00\x00V10\x89\x88\x87R.", "dtype 'V10' is not admitted"),
    (b"\x80\x04\x8f\x94.", "opcode EMPTY_SET is not admitted"),
    (b"\x80\x02]q\x00h\x00a.", "a recursive container"),
    (b"\x80\x02}q\x00(K\x01X", "not a readable pickle"),
])  # fmt: skip
def test_safe_unpickler_refusals(data, why):
    with pytest.raises(InputError) as info:
        loads(data, "mapping_x.npy")
    _one_line(info, "mapping_x.npy", why)


# -- split and images ------------------------------------------------------------------------------


def _reference_split(ids_by_subject, fraction=0.2, seed=0):
    """The documented rule, written out independently."""
    shared = set.intersection(*map(set, ids_by_subject.values()))
    n_test = min(int(fraction * min(map(len, ids_by_subject.values())) + 0.5), len(shared))
    ranked = sorted(shared, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    test = sorted(ranked[:n_test])
    return test, sorted(set().union(*ids_by_subject.values()) - set(test))


def test_split_shared_images_of_the_group(root):
    st = algo.read_stimuli(_entry(root), str(root), PX)
    test, train = _reference_split(IDS)
    assert st.test.stimulus_id.astype(int).tolist() == test and len(test) == 4  # round(0.2 * 20)
    assert set(test) <= set(SHARED)
    assert st.train.stimulus_id.astype(int).tolist() == train and len(train) == 20 + 24 - 8 - 4
    assert st.test.names.tolist() == [f"nsd-{i:05d}" for i in test]
    assert (st.train.category == -1).all() and (st.test.category == -1).all()
    for split in (st.train, st.test):  # every image is the one its NSD id names (PNG is lossless)
        for nsd, image in zip(split.stimulus_id.astype(int), split.images):
            np.testing.assert_array_equal(image, _image(nsd))
    again = algo.read_stimuli(_entry(root, split_subjects=["subj02", "1"]), str(root), PX)
    np.testing.assert_array_equal(again.test.stimulus_id, st.test.stimulus_id)  # deterministic, order-free
    seeds = {tuple(algo.read_stimuli(_entry(root, split_seed=s), str(root), PX).test.stimulus_id) for s in range(4)}
    assert len(seeds) > 1
    assert [sorted(t) == list(t) and set(t) <= set(SHARED) for t in seeds] == [True] * len(seeds)


def test_split_of_one_subject_is_its_own_8_to_2(root):
    st = algo.read_stimuli(_entry(root, split_subjects=["01"], test_fraction=0.25, split_seed=7), str(root), PX)
    test, train = _reference_split({"subj01": IDS["subj01"]}, 0.25, 7)
    assert st.test.stimulus_id.astype(int).tolist() == test and len(test) == 5
    assert st.train.stimulus_id.astype(int).tolist() == train and len(train) == 15  # subj02's images left out


def test_images_resized_like_god(root):
    entry = {**_entry(root), "unpaired_images": str(root / "subj02/test_split/test_images")}
    st = algo.read_stimuli(entry, str(root), 8)
    assert st.unpaired.names.tolist() == ["test-0001_nsd-70002"]  # challenge test images: no public fMRI
    nsd = int(st.test.stimulus_id[0])
    row = IDS["subj01"].index(nsd) + 1
    with Image.open(root / f"subj01/training_split/training_images/train-{row:04d}_nsd-{nsd:05d}.png") as im:
        np.testing.assert_array_equal(st.test.images[0], square_resize(im, 8))
    assert st.train.images.shape == (len(st.train), 8, 8, 3)


# -- subjects ---------------------------------------------------------------------------------------


def test_read_subject_rows_hemispheres_and_split(root, subjects):
    st = algo.read_stimuli(_entry(root), str(root), PX)
    for folder, label in (("subj01", "1"), ("subj02", "subj02")):
        s = subjects[folder]
        rec = algo.read_subject(_files(root, label), st)
        np.testing.assert_array_equal(rec.fmri, np.concatenate([s.lh_fmri, s.rh_fmri], axis=1))  # lh then rh
        assert rec.fmri.dtype == np.float32 and rec.prenormalized and (rec.run == 0).all()
        for row, (dtype, idx) in enumerate(zip(rec.datatype, rec.image_index)):  # fMRI row i ↔ image i
            split = st.test if dtype == TEST else st.train
            assert int(split.stimulus_id[idx]) == s.nsd_ids[row]
            np.testing.assert_array_equal(split.images[idx], s.images[row])
        assert sorted(rec.image_index[rec.datatype == TEST].tolist()) == list(range(len(st.test)))
        assert set(rec.datatype.tolist()) == {TRAIN, TEST}
        n_lh = VERTS[folder][0]
        np.testing.assert_array_equal(rec.voxel_xyz[:, 0], np.r_[np.zeros(n_lh), np.ones(VERTS[folder][1])])
        np.testing.assert_array_equal(rec.voxel_xyz[:, 1], np.concatenate(s.fsaverage_vertices))
        assert rec.attrs["n_vertices_lh"] == n_lh and rec.attrs["atlases"] == sorted(MAPPINGS)


def test_roi_names_unions_and_config_unions(root, subjects):
    st = algo.read_stimuli(_entry(root), str(root), PX)
    rec = algo.read_subject(_files(root, "01"), st)
    lab = {a: np.concatenate(h) for a, h in subjects["subj01"].roi_labels.items()}
    prf, faces, streams = lab["prf-visualrois"], lab["floc-faces"], lab["streams"]
    np.testing.assert_array_equal(rec.rois["V1v"], prf == 1)
    np.testing.assert_array_equal(rec.rois["V1"], (prf == 1) | (prf == 2))
    np.testing.assert_array_equal(rec.rois["V4"], prf == 7)
    np.testing.assert_array_equal(rec.rois["FFA"], (faces == 2) | (faces == 3))
    np.testing.assert_array_equal(rec.rois["FFA1"], faces == 2)
    np.testing.assert_array_equal(rec.rois["mTLfaces"], faces == 4)
    np.testing.assert_array_equal(rec.rois["midventral"], streams == 2)
    np.testing.assert_array_equal(rec.rois["prfvisualrois"], prf > 0)
    assert rec.rois["all"].all() and len(rec.rois["all"]) == sum(VERTS["subj01"])
    assert "Unknown" not in rec.rois
    lvc = masking.resolve_roi(rec, "LVC", {"LVC": ["V1", "V2", "V3"]})  # config unions keep working
    np.testing.assert_array_equal(lvc, (prf >= 1) & (prf <= 6))
    with pytest.raises(InputError) as info:
        masking.resolve_roi(rec, "LOC", {})
    _one_line(info, "'LOC' not found", "FFA1")
    found = algo.file_rois(_entry(root), str(root), "01")
    assert found[0].endswith("subj01/roi_masks") and set(rec.rois) == found[1]
    assert set(algo.ROIS) <= found[1]


def test_atlas_option_and_colliding_names(root, subjects):
    files = _files(root, "02", atlases=["floc-faces"])
    assert sorted(k for k in files if k.startswith("mapping_")) == ["mapping_flocfaces"]
    assert files["fsaverage_lh"].endswith("subj02/roi_masks/lh.all-vertices_fsaverage_space.npy")
    defs = algo.roi_definitions({"a-x": {1: "PPA", 2: "RSC"}, "b": {1: "PPA-1", 3: "PPA"}})
    assert defs["PPA"] == [("a-x", frozenset({1})), ("b", frozenset({3}))]
    assert defs["axPPA"] == [("a-x", frozenset({1}))] and defs["bPPA"] == [("b", frozenset({3}))]
    assert defs["ax"] == [("a-x", frozenset({1, 2}))] and defs["all"] == []


def test_dag_contract_every_subject_has_every_test_image(root, tmp_path):
    st = algo.read_stimuli(_entry(root), str(root), PX)
    prepared.write_images_file(tmp_path / "images.h5", st, {})
    stored = prepared.read_images_file(tmp_path / "images.h5", with_images=False)  # what mask_roi reads
    for label in ("01", "02"):
        rec = algo.read_subject(_files(root, label), stored)
        out = masking.prepare_subject(rec, "V1", {}, "run", n_test_images=len(stored.test), roster=algo.ROIS)
        assert out["test/fmri"].shape == (len(stored.test), int(rec.rois["V1"].sum()))
        assert out.attrs["normalization"] == "none"  # z-scored by the challenge already
    one = algo.read_stimuli(_entry(root, split_subjects=["01"]), str(root), PX)
    with pytest.raises(InputError) as info:
        algo.read_subject(_files(root, "02"), one)
    _one_line(info, "subj02", "split_subjects")


# -- config ---------------------------------------------------------------------------------------


def test_inputs_name_the_files_rules_track(root):
    entry = _entry(root, labels_csv="image_infos/{subject}_infos_train.csv")
    assert algo.image_inputs(entry, str(root)) == [
        f"{root}/subj01/training_split/training_images", f"{root}/subj02/training_split/training_images",
        f"{root}/image_infos/subj01_infos_train.csv", f"{root}/image_infos/subj02_infos_train.csv"]  # fmt: skip
    files = _files(root, "1")
    assert files["subject"] == f"{root}/subj01/training_split/training_fmri/lh_training_fmri.npy"
    assert files["lh_prfvisualrois"] == f"{root}/subj01/roi_masks/lh.prf-visualrois_challenge_space.npy"
    assert all(os.path.exists(p) for p in files.values()) and "images" not in files
    absent = str(root.parent / "absent")
    assert algo.image_inputs(_entry(absent), absent) == [absent]


@pytest.mark.parametrize("change, parts", [
    ({"options": {"test_fraktion": 0.2}}, ["datasets[3].options", "'test_fraktion'", "test_fraction"]),
    ({"options": {"test_fraction": 1.5}}, ["options.test_fraction", "between 0 and 1"]),
    ({"options": {"split_seed": -1}}, ["options.split_seed"]),
    ({"options": {"split_subjects": ["01"]}}, ["datasets[3].subjects", "['02']", "split_subjects"]),
    ({"options": {"atlases": ["floc-face"]}}, ["'floc-face' not found", "there: floc-bodies, floc-faces,"]),
    ({"options": {"labels_csv": "{subj}.csv"}}, ["options.labels_csv", "{subject}"]),
    ({"roi_source": "nifti"}, ["datasets[3].roi_source"]),
    ({"subjects": ["S1"]}, ["datasets[3].subjects", "'S1'"]),
    ({"subjects": ["1", "subj01"]}, ["datasets[3].subjects", "['1', 'subj01'] all name folder subj01"]),
])  # fmt: skip
def test_check_refuses_bad_settings(root, change, parts):
    entry = {**_entry(root), **change}
    with pytest.raises(InputError) as info:
        algo.check(entry, "datasets[3]")
    _one_line(info, *parts)


def test_config_rois_checked_against_mapping_files(root):
    entry = {**_entry(root), "rois": ["V1", "FFA", "early", "VC"]}
    _check_file_rois(entry, "datasets[0]", algo.READER, {"VC": ["V1", "V2", "V3", "V4", "FFA"]})
    entry["rois"] = ["LOC"]
    with pytest.raises(InputError) as info:
        _check_file_rois(entry, "datasets[0]", algo.READER, {})
    _one_line(info, "'LOC'", "roi_masks", "mTLfaces")


# -- labels ---------------------------------------------------------------------------------------


def test_labels_csv_aligned_to_images(root, subjects, tmp_path):
    entry = _entry(root, labels_csv="image_infos/{subject}_infos_train.csv")
    algo.read_stimuli(entry, str(root), PX)  # checked when images are prepared
    labels = algo.read_labels(entry, str(root), "02")
    s = subjects["subj02"]
    assert labels.nsd_id.tolist() == s.nsd_ids and labels.coco_id.tolist() == s.labels[0]
    assert labels.names.tolist() == CATEGORIES and labels.coco_split.tolist() == s.labels[1]
    np.testing.assert_array_equal(labels.multi_hot, s.labels[2].astype(bool))
    path = tmp_path / "by_id.csv"  # an nsdId column joins a subset in any order
    path.write_text(",nsdId,cocoId,cocoSplit,dog\n0,17,9,val2017,1.0\n1,5,8,train2017,0.0\n")
    got = algo.read_labels_csv(path, [5, 17])
    assert got.coco_id.tolist() == [8, 9] and got.multi_hot[:, 0].tolist() == [False, True]


@pytest.mark.parametrize("text, parts", [
    ("cocoId,cocoSplit,dog\n1,val2017,1\n", ["1 rows for 20 images"]),
    ("cocoId,dog\n1,1\n", ["lacks ['cocoSplit']"]),
    ("cocoId,cocoSplit,dog\n" + "1,val2017,0.5\n" * 20, [":2:", "0 or 1"]),
    ("cocoId,cocoSplit,dog\n" + "x,val2017,1\n" * 20, [":2:", "integers"]),
    ("cocoId,cocoSplit\n1,val2017\n", ["no category columns"]),
])  # fmt: skip
def test_bad_labels_csv(copy, text, parts):
    (copy / "image_infos" / "subj01_infos_train.csv").write_text(text)
    with pytest.raises(InputError) as info:
        algo.read_stimuli(_entry(copy, labels_csv="image_infos/{subject}_infos_train.csv"), str(copy), PX)
    _one_line(info, "subj01_infos_train.csv", *parts)


def test_labels_that_disagree_on_shared_images(copy):
    path = copy / "image_infos" / "subj02_infos_train.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace(str(500_000 + IDS["subj02"][0]), "42", 1)
    lines[2] = lines[2].replace(str(500_000 + 5), "43", 1)  # nsd 5 is shared with subj01
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        algo.read_stimuli(_entry(copy, labels_csv="image_infos/{subject}_infos_train.csv"), str(copy), PX)
    _one_line(info, "subj02_infos_train.csv", "NSD image 5 has cocoId 43", "subj01_infos_train.csv")


# -- bad input: one line each, naming the file ------------------------------------------------------

SUB1 = "subj01/training_split"


def _break(root, what):
    fmri = root / SUB1 / "training_fmri"
    masks = root / "subj01" / "roi_masks"
    if what == "missing fmri":
        (fmri / "rh_training_fmri.npy").unlink()
    elif what == "rows":
        np.save(fmri / "lh_training_fmri.npy", np.zeros((19, 130), np.float32))
    elif what == "pickled fmri":
        np.save(fmri / "lh_training_fmri.npy", np.empty((20, 130), dtype=object), allow_pickle=True)
    elif what == "mask length":
        np.save(masks / "rh.floc-faces_challenge_space.npy", np.zeros(169, np.int64))
    elif what == "unknown label":
        np.save(masks / "lh.streams_challenge_space.npy", np.full(130, 9, np.int64))
    elif what == "missing mask":
        (masks / "lh.streams_challenge_space.npy").unlink()
    elif what == "malicious mapping":
        (masks / "mapping_streams.npy").write_bytes(pickle.dumps({1: _Evil(root / "PWNED")}))
    elif what == "mapping not a dict":
        (masks / "mapping_streams.npy").write_bytes(mapping_bytes({"early": 1}))
    elif what == "fsaverage count":
        np.save(masks / "lh.all-vertices_fsaverage_space.npy", np.ones(FSAVERAGE, np.int64))


@pytest.mark.parametrize("what, parts", [
    ("missing fmri", ["fMRI file not found", "rh_training_fmri.npy"]),
    ("rows", ["lh_training_fmri.npy: 19 fMRI rows but 20 images", "training_images"]),
    ("pickled fmri", ["lh_training_fmri.npy", "pickled"]),
    ("mask length", ["rh.floc-faces_challenge_space.npy: 169 vertices", "rh_training_fmri.npy has 170 columns"]),
    ("unknown label", ["lh.streams_challenge_space.npy: label 9 is not in", "mapping_streams.npy"]),
    ("missing mask", ["ROI mask not found", "lh.streams_challenge_space.npy", "floc-bodies, floc-faces"]),
    ("malicious mapping", ["mapping_streams.npy", "refused to unpickle"]),
    ("mapping not a dict", ["mapping_streams.npy", "int label -> ROI name"]),
    ("fsaverage count", ["lh.all-vertices_fsaverage_space.npy: 1000 challenge vertices", "130 columns"]),
])  # fmt: skip
def test_bad_subject_files(copy, what, parts):
    st = algo.read_stimuli(_entry(copy), str(copy), PX)
    files = _files(copy, "01")
    _break(copy, what)
    with pytest.raises(InputError) as info:
        algo.read_subject(files, st)
    _one_line(info, *parts)
    assert not (copy / "PWNED").exists()


@pytest.mark.parametrize("name, parts", [
    ("train-0021_nsd-1234.jpg.png", ["train-0021_nsd-1234.jpg.png", "does not match train-XXXX_nsd-YYYYY.png"]),
    ("Train-0021_nsd-01234.png", ["Train-0021_nsd-01234.png", "does not match"]),
    ("train-0022_nsd-01234.png", ["no train-0021_nsd-*.png", "rows must be 1..21"]),
    ("train-0003_nsd-01234.png", ["train-0003_nsd-01234.png: row 3 is also"]),
    ("train-0021_nsd-00005.png", ["NSD id 5 names more than one image"]),
])  # fmt: skip
def test_bad_image_names(copy, name, parts):
    Image.fromarray(_image(0)).save(copy / SUB1 / "training_images" / name)
    with pytest.raises(InputError) as info:
        algo.read_stimuli(_entry(copy), str(copy), PX)
    _one_line(info, *parts)


def test_unknown_atlas_and_missing_tree(root):
    files = _files(root, "01", atlases=["floc-word"])
    st = algo.read_stimuli(_entry(root), str(root), PX)
    with pytest.raises(InputError) as info:
        algo.read_subject(files, st)
    _one_line(info, "ROI mapping not found", "mapping_floc-word.npy",
              "floc-bodies, floc-faces, floc-places, floc-words, prf-visualrois, streams")
    with pytest.raises(InputError) as info:
        algo.read_stimuli(_entry(root / "nothing"), str(root / "nothing"), PX)
    _one_line(info, "nothing", "no subjNN/training_split/training_images")
    assert algo.file_rois(_entry(root), str(root), "07") is None
