"""Paper 004's family plugin: fMRI channels and maps from the prepared files, labels from the
simulation truth, the classifier's label sets and scores, the confusion figure's matrix, and the
classifier's step-decay schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmrirecon.data.prepared import PreparedSubject
from fmrirecon.errors import InputError
from fmrirecon.evaluate.stats import clopper_pearson
from fmrirecon.methods.pix2pix import GENERATOR_LEVELS
from fmrirecon.methods.pix2pix.classifier import label_sets, score
from fmrirecon.methods.pix2pix.figures import confusion
from fmrirecon.methods.pix2pix.gan import fmri_maps
from fmrirecon.methods.pix2pix.labels import LabelSet, fmri_channels, hemisphere_columns, image_labels
from fmrirecon.models.pix2pix import SIZES
from fmrirecon.train.schedules import lr_at


def test_torch_free_generator_levels_match_the_models():
    for size, (levels, side) in GENERATOR_LEVELS.items():
        assert levels == len(SIZES[size]["channels"]) and side == SIZES[size]["image"]


def test_step_decay_is_their_keras_scheduler():
    """lr for epochs 0..9, then x0.1 at the start of every later epoch (5 steps per epoch here)."""
    s = {"lr": 0.01, "schedule": "step_decay", "epochs": 13, "decay_start_epoch": 10, "decay_factor": 0.1}
    per_epoch = [lr_at(5 * e, 65, s) for e in range(13)]
    assert per_epoch[:10] == [0.01] * 10
    assert per_epoch[10:] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert lr_at(5 * 10 + 4, 65, s) == pytest.approx(1e-3)  # constant within an epoch


def _subject(train, test, xyz):
    return PreparedSubject({"train": {"fmri": np.asarray(train, np.float32)},
                            "test": {"fmri": np.asarray(test, np.float32)},
                            "voxels": {"xyz": np.asarray(xyz, np.float64)}})  # fmt: skip


def test_fmri_channels_volumetric_is_one_channel_scaled_by_the_training_range():
    d = _subject([[0.0, 2.0, 4.0], [4.0, 0.0, 2.0]], [[8.0, -4.0, 2.0]], np.zeros((3, 3)))
    x, info = fmri_channels(d, length=4)
    assert info["channels"] == 1 and info["layout"] == "single" and info["voxels_per_channel"] == [3]
    np.testing.assert_allclose(x["train/fmri"][0, 0], [0.0, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(x["test/fmri"][0, 0], [2.0, -1.0, 0.5, 0.0])  # the test range is not used
    with pytest.raises(InputError, match="surface"):
        fmri_channels(d, layout="hemispheres")


def test_fmri_channels_split_surface_vertices_by_hemisphere():
    xyz = [[0, 5, np.nan], [1, 0, np.nan], [0, 7, np.nan], [1, 3, np.nan], [1, 4, np.nan]]
    assert [c.tolist() for c in hemisphere_columns(np.array(xyz))] == [[0, 2], [1, 3, 4]]
    assert hemisphere_columns(np.array([[10.0, -3.0, 2.0]])) is None  # millimetre coordinates
    train = np.arange(10, dtype=np.float32).reshape(2, 5)
    x, info = fmri_channels(_subject(train, train[:1], xyz))
    assert info["layout"] == "hemispheres" and x["train/fmri"].shape == (2, 2, 3)
    # left = columns 0 and 2 (values 0, 2 | 5, 7), scaled by their own min 0 and max 7
    np.testing.assert_allclose(x["train/fmri"][:, 0], [[0, 2 / 7, 0], [5 / 7, 1, 0]])
    x1, _ = fmri_channels(_subject(train, train[:1], xyz), layout="single")
    assert x1["train/fmri"].shape == (2, 1, 5)
    # an ROI with vertices of the right hemisphere only: one channel, still read as surface data
    right = [[1, v, np.nan] for v in range(5)]
    x2, info2 = fmri_channels(_subject(train, train[:1], right))
    assert x2["train/fmri"].shape == (2, 1, 5) and info2["channels"] == 1 and info2["layout"] == "hemispheres"


def test_fmri_maps_reshape_row_major_then_enlarge_or_shrink():
    ch = np.arange(1, 7, dtype=np.float32).reshape(1, 1, 6)
    m = fmri_maps(ch, 3, 3)
    assert m[0, 0].tolist() == [[1, 2, 3], [4, 5, 6], [0, 0, 0]]  # zero beyond the last voxel
    big = fmri_maps(ch, 3, 6)  # nearest: every map pixel becomes a 2 x 2 block
    assert big[0, 0, :2, :2].unique().tolist() == [1.0] and big[0, 0, 4:, 4:].unique().tolist() == [0.0]
    small = fmri_maps(np.arange(16, dtype=np.float32).reshape(1, 1, 16), 4, 2)  # 2 x 2 averages
    assert small[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    with pytest.raises(InputError, match="do not fit"):
        fmri_maps(np.zeros((1, 1, 10), np.float32), 3, 3)


def test_simulated_labels_are_the_objects_attributes_with_the_foreground_box(sim_images, sim_raw):
    labels = image_labels(str(sim_images), str(sim_raw / "truth.h5"))
    assert labels.source == "simulation truth (attributes)"
    assert {n.split(":")[0] for n in labels.names} == {"shape", "hue", "pattern"}
    import h5py

    with h5py.File(sim_images) as f:
        fg = f["test/foreground"][0]
    objs = labels.objects["test"][0]
    assert len(objs) == 3 and len({str(o["bbox"]) for o in objs}) == 1
    x, y, w, h = objs[0]["bbox"]
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    assert (x, y, w, h) == (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
    with pytest.raises(InputError, match="no /train/objects and no simulation truth"):
        image_labels(str(sim_images), "")


def _box(cat, w, h):
    return {"category": cat, "bbox": [0, 0, w, h]}


def test_label_sets_filter_boxes_then_counts_and_score_each_on_its_own_test_labels():
    names = ["cat", "dog", "person"]
    train = [[_box("person", 100, 100), _box("dog", 10, 10)], [_box("person", 100, 100)], [_box("cat", 80, 80)]]
    test = [[_box("dog", 90, 90), _box("person", 5, 5), _box("person", 100, 100)]]
    labels = LabelSet(names, {"train": train, "test": test}, "objects")
    settings = {"box_filter": {"max_area": 2500}, "count_filter": {"fraction": 0.0, "drop": "frequent"}}
    sets = label_sets(labels, np.array([0, 1, 2, 0]), np.array([0]), settings)
    tr, te, info = sets["unfiltered"]
    assert tr.tolist() == [[0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 1, 1]] and te.tolist() == [[0, 1, 1]]
    tr, te, info = sets["filtered"]  # the small dog and the one small person (any instance) go
    assert tr.tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 1]] and te.tolist() == [[0, 1, 0]]
    assert info["zeroed_by_box_filter"] == 3 and info["dropped_labels"] == []
    # count filter at half the training rows: person (3 of 4 rows) is frequent and dropped everywhere
    settings["count_filter"]["fraction"] = 0.5
    tr, te, info = label_sets(labels, np.array([0, 1, 2, 0]), np.array([0]), settings)["filtered"]
    assert info["dropped_labels"] == ["person"] and tr[:, 2].sum() == 0 and te.tolist() == [[0, 1, 0]]


def test_classifier_scores_against_hand_values():
    truth = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    scores = np.array([[0.1, 0.2, 0.9], [0.1, 0.8, 0.3], [0.7, 0.1, 0.2], [0.9, 0.5, 0.1]])
    r = score(scores, truth, seed=0, n_boot=200)
    # Keras: top == first positive label: rows 1 and 3 (row 0's first positive is label 0, top is 2)
    assert r["keras_accuracy"]["value"] == 0.5 and r["top1_in_set"]["value"] == 0.75
    # AP per label (sklearn's tie handling): label 0 ranks pos 0.9, neg 0.7, then a tie of pos and
    # neg at 0.1: 0.5·1 + 0.5·(2/4) = 0.75; label 1: both positives on top = 1; label 2: pos 0.9,
    # neg 0.3, pos 0.2: 0.5·1 + 0.5·(2/3)
    assert r["mAP"]["value"] == pytest.approx((0.75 + 1 + (0.5 + 0.5 * 2 / 3)) / 3)
    assert r["mAP"]["n"] == 3 and r["mAP"]["ci_low"] <= r["mAP"]["value"] <= r["mAP"]["ci_high"]
    assert r["mAP"]["interval"] == "percentile bootstrap over labels"
    # the accuracies are hits and misses of 4 images: exact binomial CIs (2 of 4, 3 of 4)
    assert (r["keras_accuracy"]["ci_low"], r["keras_accuracy"]["ci_high"]) == clopper_pearson(2, 4)
    assert (r["top1_in_set"]["ci_low"], r["top1_in_set"]["ci_high"]) == clopper_pearson(3, 4)


def test_confusion_rows_are_true_labels_and_columns_the_top1():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]])
    scores = np.array([[0.1, 0.2, 0.9], [0.1, 0.8, 0.3], [0.7, 0.1, 0.2]])
    c = confusion(scores, truth)
    assert c.tolist() == [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert confusion(scores, np.zeros_like(truth)).sum() == 0  # no true labels: empty rows, no NaN


def test_pix2pix_image_size_is_checked_at_parse_time():
    from fmrirecon.methods.pix2pix import check

    check("p", {"size": "tiny", "image_size": 64}, {})
    with pytest.raises(InputError, match="methods.p .*48 is not a multiple of 32"):
        check("p", {"size": "tiny", "image_size": 48}, {})
    # an overlay may replace the datasets the classifier was restricted to: no error, it runs nowhere
    check("p", {"size": "tiny", "image_size": None}, {"datasets": [{"name": "a"}], "category_classifier": {"datasets": ["b"]}})
    torch.manual_seed(0)
