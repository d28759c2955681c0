"""BOLD5000 reader on tiny trees written in release 2.0's published layout (``write_subject_tree``),
and in release 1's (``write_release1_tree``: the same design as ROI .mat files + stim lists).

The tree: CSI1 sees 12 training images once and the 4 repeated images 3 times each over 10 sessions
of one run; CSI4 sees 6 training images, repeated images R1-R3 (R3 twice) and never R4. Images
of the three published kinds (COCO / ImageNet / Scene names). Expectations are computed here from
the design written, never by the reader: trial → image from the lines, betas from the arrays.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fmrirecon.config import _check_file_rois, validate_config
from fmrirecon.data import masking
from fmrirecon.data.readers import READERS, bold5000
from fmrirecon.data.readers.base import TEST, TRAIN
from fmrirecon.data.readers.bold5000_files import (
    BETAS_DIR,
    LABELS,
    LISTS_DIR,
    PRESENTED_DIR,
    REPEATED_LIST,
)
from fmrirecon.data.readers.images import square_resize
from fmrirecon.data.simulation import (
    check_simulated,
    generated_dataset,
    simulated_rois,
    truth_per_voxel,
)
from fmrirecon.data.simulation import voxels as sim_voxels
from fmrirecon.data.simulation.bold5000_layout import (
    write_release1_tree,
    write_stimuli,
    write_stimuli_tree,
    write_subject,
    write_subject_tree,
)  # fmt: skip
from fmrirecon.data.simulation.god_layouts import LAYOUTS, SimStimuli, SimSubject
from fmrirecon.errors import InputError
from PIL import Image

PX = 16
REPEATED = ["COCO_train2014_000000000036.jpg", "n01440764_10110.JPEG", "airplanecabin1.jpg", "n09999999_7.JPEG"]
TRAIN_FILES = [f"COCO_train2014_{k:012d}.jpg" for k in (5, 90, 1234)] + [f"n0{k}_{k % 97}.JPEG" for k in
               (1530575, 1531178, 1532829, 1534433)] + ["abbey4.jpg", "bedroom12.jpg", "coast1.jpg", "field3.jpg",
                                                       "zoo10.jpg"]  # fmt: skip
STEM = {f: f.rsplit(".", 1)[0] for f in REPEATED + TRAIN_FILES}
WIDTH = dict(zip(LABELS, (7, 5, 4, 6, 3, 3, 5, 4, 2, 3)))  # voxels per ROI file
WIDTH4 = dict(zip(LABELS, (6, 6, 3, 5, 2, 4, 4, 4, 3, 2)))


def _image(k: int) -> np.ndarray:
    return np.random.default_rng(100 + k).integers(0, 256, (20, 24, 3), dtype=np.uint8)  # not square


def _design(csi: str) -> list[list[list[str]]]:
    """Per session, per run, the list lines (rep_ on every presentation of a repeated image after the first)."""
    rng = np.random.default_rng(int(csi[-1]))
    if csi == "CSI1":
        trials = TRAIN_FILES + REPEATED * 3
    else:
        trials = TRAIN_FILES[::2] + REPEATED[:3] + REPEATED[:3] + REPEATED[:1]
    order = [trials[i] for i in rng.permutation(len(trials))]
    seen, lines = set(), []
    for name in order:
        lines.append(("rep_" if name in seen else "") + name)
        seen.add(name)
    n_sessions = 10 if csi == "CSI1" else 3
    chunks = np.array_split(np.arange(len(lines)), n_sessions)
    return [[[lines[i] for i in chunk]] for chunk in chunks]


def _lines(csi: str) -> list[str]:
    return [ln for sess in _design(csi) for run in sess for ln in run]


def _betas(csi: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(10 + int(csi[-1]))
    width = WIDTH if csi == "CSI1" else WIDTH4
    n = len(_lines(csi))
    return {label: rng.normal(size=(n, w)).astype(np.float32) * 3 + 1 for label, w in width.items()}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The tree, written once; tests that break files take ``copy``."""
    root = tmp_path_factory.mktemp("tree") / "BOLD5000"
    images = {name: _image(k) for k, name in enumerate(REPEATED + TRAIN_FILES)}
    write_stimuli_tree(root, images, REPEATED)
    for csi in ("CSI1", "CSI4"):
        write_subject_tree(root, csi, _design(csi), _betas(csi))
    return root


@pytest.fixture
def copy(tmp_path, root):
    return Path(shutil.copytree(root, tmp_path / "BOLD5000"))


def _entry(root, subjects=("1",), **options):
    return {"name": "b5k", "format": "bold5000", "path": str(root), "subjects": list(subjects), "rois": ["VC"],
            "roi_source": "metadata", "unlabeled_fmri": "", "unpaired_images": "", "options": options}  # fmt: skip


def _read(root, subject="1", subjects=("1",), **options):
    entry = _entry(root, subjects, **options)
    stimuli = bold5000.read_stimuli(entry, str(root), PX)
    return stimuli, bold5000.read_subject(bold5000.subject_inputs(entry, str(root), subject), stimuli, options)


def _one_line(exc_info, *parts):
    message = str(exc_info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


# -- tree and stimuli ------------------------------------------------------------------------------


def test_the_tree_is_the_published_layout(root):
    assert (root / PRESENTED_DIR / "COCO" / REPEATED[0]).is_file()
    assert (root / PRESENTED_DIR / "ImageNet" / REPEATED[1]).is_file()
    assert (root / PRESENTED_DIR / "Scene" / REPEATED[2]).is_file()
    assert (root / REPEATED_LIST).read_text().split() == REPEATED
    assert (root / BETAS_DIR / "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_RHRSC.npy").is_file()
    assert (root / LISTS_DIR / "CSI1" / "CSI1_sess10" / "CSI1_sess10_run01.txt").is_file()
    assert READERS["bold5000"] is bold5000.READER and bold5000.READER.published_dataset == "BOLD5000"


def test_split_test_is_the_repeated_images_train_the_rest(root):
    st = bold5000.read_stimuli(_entry(root), str(root), PX)
    assert st.test.names.tolist() == sorted(STEM[f] for f in REPEATED)
    assert st.train.names.tolist() == sorted(STEM[f] for f in TRAIN_FILES)
    files = {STEM[f]: f for f in REPEATED + TRAIN_FILES}
    for split in (st.train, st.test):  # each image is its file, decoded and resized independently
        for name, image in zip(split.names, split.images):
            path = next((root / PRESENTED_DIR).rglob(files[name]))
            with Image.open(path) as im:
                np.testing.assert_array_equal(image, square_resize(im, PX))
        assert np.isnan(split.stimulus_id).all()
        assert split.category.tolist() == [int(n[1:9]) if n.startswith("n0") else -1 for n in split.names]


def test_test_set_is_the_repeated_images_every_subject_saw(root):
    st = bold5000.read_stimuli(_entry(root, ("CSI1", "4")), str(root), PX)
    assert st.test.names.tolist() == sorted(STEM[f] for f in REPEATED[:3])  # CSI4 never saw R4
    assert STEM[REPEATED[3]] not in st.train.names  # nor is it trained on
    assert st.train.names.tolist() == sorted(STEM[f] for f in TRAIN_FILES)


def test_betas_rows_order_split_and_mindvis_column_order(root):
    stimuli, rec = _read(root)
    betas = _betas("CSI1")
    # MinD-Vis' create_BOLD5000_dataset, written out: for each ROI, the sorted files naming it
    files = sorted(os.listdir(root / BETAS_DIR))
    mindvis = np.concatenate([np.load(root / BETAS_DIR / f) for roi in ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
                              for f in files if "CSI1" in f and roi in f], axis=1)  # fmt: skip
    np.testing.assert_array_equal(rec.fmri, mindvis)  # no trial dropped for a one-subject entry
    names = [STEM[ln.removeprefix("rep_")] for ln in _lines("CSI1")]
    test_names = stimuli.test.names.tolist()
    assert rec.datatype.tolist() == [TEST if n in test_names else TRAIN for n in names]
    expected_index = [test_names.index(n) if n in test_names else stimuli.train.names.tolist().index(n) for n in names]
    assert rec.image_index.tolist() == expected_index
    assert rec.run.tolist() == [s + 1 for s, sess in enumerate(_design("CSI1")) for run in sess for _ in run]
    start = 0
    for label in LABELS:  # each atomic ROI is its file's columns, in place
        cols = np.flatnonzero(rec.rois[label])
        assert cols.tolist() == list(range(start, start + WIDTH[label]))
        np.testing.assert_array_equal(rec.fmri[:, cols], betas[label])
        assert (rec.voxel_xyz[cols, 0] == (label[:2] == "RH")).all()
        assert rec.voxel_xyz[cols, 1].tolist() == list(range(WIDTH[label]))
        start += WIDTH[label]
    assert rec.attrs["rep_marked"] == 8 and rec.attrs["n_sessions"] == 10 and not rec.prenormalized


def test_hemisphere_and_union_rois(root):
    _, rec = _read(root)
    for area in ("EarlyVis", "LOC", "OPA", "PPA", "RSC"):
        np.testing.assert_array_equal(rec.rois[area], rec.rois[f"LH{area}"] | rec.rois[f"RH{area}"])
    assert rec.rois["VC"].all() and rec.rois["VC"].sum() == sum(WIDTH.values())
    assert rec.rois["EarlyVis"].sum() == WIDTH["LHEarlyVis"] + WIDTH["RHEarlyVis"] == 12


def test_run_unit_run_numbers_the_run_lists(root):
    _, rec = _read(root, run_unit="run")
    assert rec.run.tolist() == [k + 1 for k, sess in enumerate(_design("CSI1")) for run in sess for _ in run]


def test_test_repeats_are_averaged_downstream(root):
    stimuli, rec = _read(root, "4", ("CSI1", "CSI4"))
    lines = _lines("CSI4")
    names = [STEM[ln.removeprefix("rep_")] for ln in lines]
    assert rec.attrs["dropped_trials"] == 0 and rec.fmri.shape == (len(lines), sum(WIDTH4.values()))
    prep = masking.prepare_subject(rec, "LOC", {}, "none", len(stimuli.test), roster=bold5000.READER.rois)
    loc = np.concatenate([_betas("CSI4")["LHLOC"], _betas("CSI4")["RHLOC"]], axis=1)
    for row, name in enumerate(stimuli.test.names):
        trials = [i for i, n in enumerate(names) if n == name]
        assert len(trials) == {"COCO_train2014_000000000036": 3}.get(name, 2)  # R3 twice, R1 three times
        np.testing.assert_allclose(prep["test/fmri"][row], loc[trials].mean(0), rtol=1e-6)
    assert prep["voxels/roi_names"].astype(str).tolist() == list(LABELS)
    # CSI1 in that entry: its R4 trials are out of both splits
    _, rec1 = _read(root, "1", ("1", "4"))
    assert rec1.attrs["dropped_trials"] == 3 and len(rec1.fmri) == len(_lines("CSI1")) - 3


def test_unpadded_session_names_sort_naturally(copy, root):
    lists = copy / LISTS_DIR / "CSI1"
    for k in range(1, 11):
        (lists / f"CSI1_sess{k:02d}").rename(lists / f"CSI1_sess{k}")
    _, rec = _read(copy)
    _, ref = _read(root)
    np.testing.assert_array_equal(rec.image_index, ref.image_index)  # a string sort puts sess10 second


def test_subject_labels():
    assert [bold5000.subject_name(s) for s in ("1", "CSI1", "csi2", "04")] == ["CSI1", "CSI1", "CSI2", "CSI4"]
    for bad in ("sub1", "CSI", "0", "CSI1a"):
        with pytest.raises(InputError) as info:
            bold5000.subject_name(bad)
        _one_line(info, repr(bad), "CSI1..CSI4")


# -- bad input ------------------------------------------------------------------------------------


def _beta(root, csi, label):
    return root / BETAS_DIR / f"{csi}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{label}.npy"


def test_missing_hemisphere_file(copy):
    missing = _beta(copy, "CSI1", "RHOPA")
    missing.unlink()
    with pytest.raises(InputError) as info:
        _read(copy)
    _one_line(info, str(missing), "missing hemisphere file", "LHOPA")
    with pytest.raises(InputError) as info:  # and at parse time
        validate_config({"datasets": [_entry(copy)]})
    _one_line(info, "config error at datasets[0]", str(missing))


def test_presentation_lists_that_do_not_match_the_rows(copy):
    run = copy / LISTS_DIR / "CSI1" / "CSI1_sess03" / "CSI1_sess03_run01.txt"
    run.write_text("".join(run.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(InputError) as info:
        _read(copy)
    n = len(_lines("CSI1"))
    _one_line(info, str(_beta(copy, "CSI1", "LHEarlyVis")), f"{n} rows", f"give {n - 1} trials",
              str(copy / LISTS_DIR / "CSI1"))  # fmt: skip


def test_an_absent_roi(copy):
    for hemi in ("LH", "RH"):
        _beta(copy, "CSI1", f"{hemi}RSC").unlink()
    stimuli, rec = _read(copy)
    assert "RSC" not in rec.rois and "VC" not in rec.rois and "PPA" in rec.rois
    with pytest.raises(InputError) as info:
        masking.prepare_subject(rec, "VC", {}, "none", len(stimuli.test))
    _one_line(info, "ROI 'VC' not found", "EarlyVis")
    with pytest.raises(InputError) as info:  # at parse time, from the file names alone
        _check_file_rois({**_entry(copy), "rois": ["RSC"]}, "datasets[0]", bold5000.READER, {})
    _one_line(info, "ROI 'RSC' is neither in", str(copy / BETAS_DIR), "LHPPA")
    names = bold5000.file_rois(_entry(copy), str(copy), "1")[1]
    assert names == set(LABELS[:8]) | {"EarlyVis", "LOC", "OPA", "PPA"}


def test_an_image_without_its_file(copy):
    (copy / PRESENTED_DIR / "Scene" / "coast1.jpg").unlink()
    with pytest.raises(InputError) as info:
        bold5000.read_stimuli(_entry(copy), str(copy), PX)
    _one_line(info, "image coast1 has no file", str(copy / LISTS_DIR / "CSI1"), str(copy / PRESENTED_DIR))


def test_betas_of_another_subject_set(root):
    stimuli = bold5000.read_stimuli(_entry(root, ("4",)), str(root), PX)
    with pytest.raises(InputError) as info:  # CSI1 saw images CSI4 did not: not in the prepared images
        bold5000.read_subject(bold5000.subject_inputs(_entry(root), str(root), "1"), stimuli, {})
    _one_line(info, "is in neither the training nor the test images", "CSI1")


def test_pickled_betas_are_refused(copy):
    path = _beta(copy, "CSI1", "LHLOC")
    np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as info:
        _read(copy)
    _one_line(info, str(path), "not a readable numeric .npy")


def test_config_checks(root):
    cfg = validate_config({"datasets": [{**_entry(root, ("CSI1", "4")), "rois": ["VC", "LHPPA", "EarlyVis"]}]})
    assert cfg["datasets"][0]["format"] == "bold5000"
    cases = [
        ({"subjects": ["1", "CSI1"]}, "['1', 'CSI1'] all name CSI1"),
        ({"subjects": ["sub1"]}, "is not a BOLD5000 subject"),
        ({"options": {"release": 3}}, "options.release: 3 is not a BOLD5000 release"),
        ({"options": {"runs": "x"}}, "unknown key(s) ['runs']"),
        ({"options": {"run_unit": "block"}}, "run_unit: 'block' must be session or run"),
        ({"roi_source": "nifti"}, "roi_source"),
        ({"rois": ["FFA"]}, "ROI 'FFA' is neither in"),
    ]
    for change, message in cases:
        with pytest.raises(InputError) as info:
            validate_config({"datasets": [{**_entry(root), **change}]})
        _one_line(info, "config error at datasets[0]", message)


# -- the simulated layout ---------------------------------------------------------------------------


def _sim(tmp_path):
    rng = np.random.default_rng(3)
    train, test = np.array([f"n0200000{k}_{k}" for k in range(6)]), np.array(["n02100000_1", "n02100001_5"])
    stim = SimStimuli(rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), train, np.arange(6),
                      rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8), test, np.array([6, 7]), ("a",) * 8)  # fmt: skip
    roi = np.array(["V1", "V1", "V2", "V3", "V4", "LOC", "LOC", "FFA", "PPA", "PPA", "OPA", "OPA", "RSC", "RSC"])
    xyz = np.stack([np.array([-3, 3, -6, 6, -3, -9, 9, -3, -3, 3, -6, 6, -3, 3.0]), np.zeros(14), np.zeros(14)], 1)
    datatype = np.array([1] * 6 + [2] * 6 + [3] * 2)
    row = np.array([3, 0, 5, 1, 4, 2, 1, 0, 0, 1, 1, 0, 0, 1])
    run = np.array([1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
    sub = SimSubject("2", rng.normal(size=(14, 14)).round(3), datatype, row, run, roi, xyz, 3, 3, train, test)
    folder = tmp_path / "bold5000"
    folder.mkdir()
    write_stimuli(folder, stim)
    write_subject(folder, sub)
    return folder, stim, sub


def test_simulated_layout_writes_what_the_reader_reads_back(tmp_path):
    folder, stim, sub = _sim(tmp_path)
    st, rec = _read(folder, "2", ("2",))
    assert st.test.names.tolist() == sorted(stim.test_names) and st.train.names.tolist() == sorted(stim.train_names)
    lines = [ln.removesuffix(".JPEG") for ln in _listed(folder / LISTS_DIR / "CSI2")]
    assert lines == ["n02000003_3", "n02000000_0", "n02000005_5", "n02000001_1", "n02000004_4", "n02000002_2",
                     "n02100001_5", "n02100000_1", "rep_n02100000_1", "rep_n02100001_5", "rep_n02100001_5",
                     "rep_n02100000_1"]  # fmt: skip
    # hemisphere = sign of x, EarlyVis = V1-V3 (not V4), FFA in no file, imagery (rows 12, 13) not written
    cols = {"LHEarlyVis": [0, 2], "RHEarlyVis": [1, 3], "LHLOC": [5], "RHLOC": [6], "LHOPA": [10], "RHOPA": [11],
            "LHPPA": [8], "RHPPA": [9], "LHRSC": [12], "RHRSC": [13]}  # fmt: skip
    np.testing.assert_allclose(rec.fmri, sub.raw[:12][:, [c for lab in LABELS for c in cols[lab]]], rtol=1e-6)
    assert (rec.run == np.repeat([1], 12)).all()  # six runs, ten a session: one session
    assert LAYOUTS["bold5000"].roi_names({}, {"voxels": {"V1": 1, "LOC": 1, "PPA": 1}}) == (
        set(LABELS) - {"LHOPA", "RHOPA", "LHRSC", "RHRSC"}) | {"EarlyVis", "LOC", "PPA"}  # fmt: skip


def _listed(folder: Path) -> list[str]:
    return [ln for p in sorted(glob.glob(str(folder / "*" / "*.txt"))) for ln in Path(p).read_text().split()]


def test_simulated_dataset_entry_is_read_as_bold5000():
    ds = {"name": "sim", "format": "simulated", "read_as": "bold5000", "subjects": ["1"], "rois": ["VC"],
          "unpaired_images": "", "gallery_images": ""}  # fmt: skip
    view = generated_dataset(ds, "results/sim/raw", {"image_size": 32})
    assert view["format"] == "bold5000" and view["path"] == "results/sim/raw/bold5000"
    assert view["unpaired_images"] == "results/sim/raw/images/unpaired" and not view["unlabeled_fmri"]
    assert not truth_per_voxel(ds, {})  # the reader's columns are not the simulator's: no oracle
    assert {"VC", "EarlyVis", "LHRSC"} <= simulated_rois(ds, {}, bold5000.READER.rois)
    check_simulated(ds, {}, "datasets[0]")


def test_optional_scene_areas_leave_the_other_voxels_as_they_were():
    counts = {"V1": 9, "V2": 8, "V3": 7, "V4": 6, "LOC": 5, "FFA": 4, "PPA": 4}
    base = sim_voxels.build_voxel_model(counts, 1.0, 6, 4, seed=5)
    more = sim_voxels.build_voxel_model({**counts, "OPA": 4, "RSC": 3}, 1.0, 6, 4, seed=5)
    n = len(base.roi)
    assert sim_voxels.roi_order(counts) == sim_voxels.ROI_ORDER and len(more.roi) == n + 7
    assert more.roi[n:].tolist() == ["OPA"] * 4 + ["RSC"] * 3
    np.testing.assert_array_equal(more.ijk[:n], base.ijk)
    for key in ("prf_xy", "prf_sigma", "channel_w", "semantic_w", "category_w"):
        np.testing.assert_array_equal(getattr(more, key)[:n], getattr(base, key))
    opa = more.semantic_w[more.roi == "OPA"]  # a shared network profile: its voxels correlate
    assert np.corrcoef(opa)[np.triu_indices(4, 1)].mean() > 0.3


# -- release 1: ROIs/CSIk/mat/CSIk_ROIs_TR<tr>.mat + ROIs/stim_lists/CSI0k_stim_lists.txt -----------


def _tr3(csi: str) -> dict[str, np.ndarray]:
    """Another TR file's values (float64, as MATLAB's default double), to tell the files apart."""
    return {label: x.astype(np.float64) * -2 + 0.5 for label, x in _betas(csi).items()}


@pytest.fixture(scope="module")
def root1(tmp_path_factory):
    """The same experiment in release 1's layout: TR34 holds release 2's betas, TR3 other values."""
    root = tmp_path_factory.mktemp("tree1") / "BOLD5000"
    write_stimuli_tree(root, {name: _image(k) for k, name in enumerate(REPEATED + TRAIN_FILES)}, REPEATED)
    for csi in ("CSI1", "CSI4"):
        write_release1_tree(root, csi, _lines(csi), _betas(csi))
        write_release1_tree(root, csi, _lines(csi), _tr3(csi), tr=3)
    return root


@pytest.fixture
def copy1(tmp_path, root1):
    return Path(shutil.copytree(root1, tmp_path / "BOLD5000"))


def _mat(root, csi="CSI1", tr=34):
    return root / "ROIs" / csi / "mat" / f"{csi}_ROIs_TR{tr}.mat"


def _stim_list(root, csi="CSI1"):
    return root / "ROIs" / "stim_lists" / f"CSI0{csi[-1]}_stim_lists.txt"


def test_release1_tree_is_the_published_layout(root1):
    assert _mat(root1).read_bytes()[:10] == b"MATLAB 5.0"  # a v5 MAT-file, as scipy.io.loadmat reads
    assert _mat(root1, "CSI4", 3).is_file()
    assert _stim_list(root1).read_text().split() == _lines("CSI1")
    assert sum(ln.startswith("rep_") for ln in _lines("CSI1")) == 8


def test_release1_reads_like_release2(root, root1):
    """TR34 holds release 2's arrays: the same recording (columns, rows, split, image rows) comes out."""
    for subject, subjects in (("1", ("1",)), ("4", ("1", "4"))):
        st1, rec1 = _read(root1, subject, subjects, release=1)
        st2, rec2 = _read(root, subject, subjects)
        assert st1.test.names.tolist() == st2.test.names.tolist()
        assert st1.train.names.tolist() == st2.train.names.tolist()
        np.testing.assert_array_equal(rec1.fmri, rec2.fmri)
        assert rec1.fmri.dtype == np.float32
        np.testing.assert_array_equal(rec1.datatype, rec2.datatype)
        np.testing.assert_array_equal(rec1.image_index, rec2.image_index)
        for name in rec2.rois:
            np.testing.assert_array_equal(rec1.rois[name], rec2.rois[name])
        np.testing.assert_array_equal(rec1.voxel_xyz, rec2.voxel_xyz)
        assert (rec1.run == 1).all()  # release 1 records no sessions or runs
        assert rec1.attrs["tr"] == 34 and rec1.attrs["release"] == 1
        assert rec1.attrs["dropped_trials"] == rec2.attrs["dropped_trials"]
    assert rec1.attrs["rep_marked"] == sum(ln.startswith("rep_") for ln in _lines("CSI4"))


def test_release1_tr_option_picks_the_file(root1):
    stimuli, rec = _read(root1, release=1, tr=3)
    values = _tr3("CSI1")
    np.testing.assert_array_equal(rec.fmri, np.concatenate([values[lab] for lab in LABELS], 1).astype(np.float32))
    names = [STEM[ln.removeprefix("rep_")] for ln in _lines("CSI1")]
    test_names = stimuli.test.names.tolist()
    assert rec.datatype.tolist() == [TEST if n in test_names else TRAIN for n in names]
    prep = masking.prepare_subject(rec, "PPA", {}, "none", len(stimuli.test))  # repeats averaged per image
    ppa = np.concatenate([values["LHPPA"], values["RHPPA"]], 1)
    for row, name in enumerate(test_names):
        np.testing.assert_allclose(prep["test/fmri"][row], ppa[[i for i, n in enumerate(names) if n == name]].mean(0),
                                   rtol=1e-5)  # fmt: skip


def test_release1_config(root1):
    entry = {**_entry(root1, ("CSI1", "4"), release=1), "rois": ["VC", "LHPPA", "EarlyVis"]}
    assert validate_config({"datasets": [entry]})["datasets"][0]["options"]["release"] == 1
    assert bold5000.image_inputs(entry, "r")[0] == "r/ROIs/stim_lists"
    assert bold5000.subject_inputs(entry, "r", "4") == {
        "subject": "r/ROIs/CSI4/mat/CSI4_ROIs_TR34.mat", "lists": "r/ROIs/stim_lists/CSI04_stim_lists.txt",
        "repeated": f"r/{REPEATED_LIST}"}  # fmt: skip
    assert bold5000.file_rois(entry, str(root1), "1") == (str(_mat(root1)), set(roi_names_all()))
    cases = [
        ({"release": True}, "options.release: True is not a BOLD5000 release"),
        ({"release": 1, "tr": 6}, "options.tr: 6 is not a release-1 TR file"),
        ({"release": 1, "tr": "34"}, "options.tr: '34' is not a release-1 TR file"),
        ({"tr": 34}, "options.tr: only with release: 1"),
        ({"release": 1, "beta_type": "TYPEA-ASSUMEHRF"}, "options.beta_type: only with release: 2"),
        ({"release": 1, "run_unit": "run"}, "options.run_unit: only with release: 2"),
    ]
    for options, message in cases:
        with pytest.raises(InputError) as info:
            validate_config({"datasets": [_entry(root1, **options)]})
        _one_line(info, "config error at datasets[0]", message)
    with pytest.raises(InputError) as info:  # an ROI absent from the file's headers, at parse time
        validate_config({"datasets": [{**_entry(root1, release=1), "rois": ["FFA"]}]})
    _one_line(info, "ROI 'FFA' is neither in", str(_mat(root1)))


def roi_names_all():
    return set(LABELS) | {"EarlyVis", "LOC", "OPA", "PPA", "RSC", "VC"}


def test_release1_missing_file(copy1):
    _mat(copy1, tr=34).unlink()
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(_mat(copy1)), "not found")
    with pytest.raises(InputError) as info:  # and at parse time
        validate_config({"datasets": [_entry(copy1, release=1)]})
    _one_line(info, "config error at datasets[0]", str(_mat(copy1)), "not found")
    _stim_list(copy1, "CSI4").unlink()
    with pytest.raises(InputError) as info:
        bold5000.read_stimuli(_entry(copy1, ("4",), release=1), str(copy1), PX)
    _one_line(info, str(_stim_list(copy1, "CSI4")), "stim list not found")


def test_release1_missing_roi_variable(copy1):
    betas = _betas("CSI1")
    del betas["RHOPA"]
    write_release1_tree(copy1, "CSI1", _lines("CSI1"), betas)
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(_mat(copy1)), "ROI variable RHOPA missing")
    assert "OPA" not in bold5000.file_rois(_entry(copy1, release=1), str(copy1), "1")[1]


def test_release1_trial_count_differs_from_the_stim_list(copy1):
    lines = _lines("CSI1")
    _stim_list(copy1).write_text("".join(f"{ln}\n" for ln in lines[:-1]))
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(_mat(copy1)), f"has {len(lines)} rows", f"gives {len(lines) - 1} trials", str(_stim_list(copy1)))
    # (voxels, trials): the rows are not the trials either
    write_release1_tree(copy1, "CSI1", lines, {k: v.T for k, v in _betas("CSI1").items()})
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(_mat(copy1)), "variable LHEarlyVis has 7 rows")


def test_release1_files_that_are_not_v5_numeric_mat_files(copy1):
    mat = _mat(copy1)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" ") + bytes(8) + b"\x00\x02IM"
    mat.write_bytes(header + bytes(384))
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(mat), "MATLAB v7.3 (HDF5) file")
    mat.write_bytes(b"not a mat file at all")
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(mat), "not a readable MATLAB .mat file")
    write_release1_tree(copy1, "CSI1", _lines("CSI1"), {**_betas("CSI1"), "LHLOC": np.array(["a", "b"])})
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(mat), "variable LHLOC is an array", "expected (trials, voxels) numbers")
    _stim_list(copy1).write_text("COCO_train2014_000000000036.jpg 2\n")
    with pytest.raises(InputError) as info:
        _read(copy1, release=1)
    _one_line(info, str(_stim_list(copy1)), "is not one image name")
