"""The report's data card (fmrirecon.report.data_card): one row per subject × ROI, read from
prepared files written by the real writers, every column checked against counts made here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmrirecon.data.prepared import PreparedSubject, write_images_file, write_subject_file
from fmrirecon.data.readers.base import ImageSplit, StimulusSet
from fmrirecon.errors import InputError
from fmrirecon.report.data_card import COLUMNS, data_card, format_sessions, write_data_card

REPO = Path(__file__).resolve().parents[2]

EXPECTED_COLUMNS = [
    "dataset", "format", "subject", "roi", "n_voxels", "train_samples", "train_images", "train_repeats",
    "test_images", "test_trials", "test_repeats_min", "test_repeats_median", "test_repeats_max",
    "imagery_images", "unlabeled_samples", "normalization", "images_train", "images_test",
    "images_unpaired", "images_gallery", "image_size", "sessions", "beta_version",
]  # fmt: skip


def _split(n: int, size: int, prefix: str) -> ImageSplit:
    return ImageSplit(
        images=np.zeros((n, size, size, 3), np.uint8),
        names=np.array([f"{prefix}{i}" for i in range(n)]),
        stimulus_id=np.full(n, np.nan),
        category=np.full(n, -1, np.int64),
    )


def _images(path: Path, splits: dict[str, int], size: int = 8, with_size_attr: bool = True) -> None:
    parts = {k: _split(n, size, k) for k, n in splits.items()}
    stimuli = StimulusSet(parts["train"], parts["test"], parts.get("unpaired"), None, parts.get("gallery"))
    write_images_file(path, stimuli, {"image_size": size} if with_size_attr else {})


def _subject(path: Path, train_index, trial_index, n_voxels: int, attrs: dict, imagery: int = 0,
             unlabeled: int = 0) -> None:  # fmt: skip
    rng = np.random.default_rng(0)
    train_index, trial_index = np.asarray(train_index, np.int64), np.asarray(trial_index, np.int64)
    test_ids = np.unique(trial_index)

    def f32(n):
        return rng.normal(size=(n, n_voxels)).astype(np.float32)

    groups = {
        "train": {"fmri": f32(len(train_index)), "image_index": train_index, "run": np.zeros(len(train_index), np.int64)},
        "test": {"fmri": f32(len(test_ids)), "image_index": test_ids, "fmri_trials": f32(len(trial_index)),
                 "trial_image_index": trial_index, "trial_run": np.ones(len(trial_index), np.int64)},
        "voxels": {"source_index": np.arange(n_voxels), "xyz": np.zeros((n_voxels, 3))},
    }  # fmt: skip
    if imagery:
        groups["imagery"] = {"fmri": f32(imagery), "image_index": np.arange(imagery), "fmri_trials": f32(2 * imagery),
                             "trial_image_index": np.repeat(np.arange(imagery), 2), "trial_run": np.zeros(2 * imagery, np.int64)}  # fmt: skip
    if unlabeled:
        groups["unlabeled"] = {"fmri": f32(unlabeled)}
    write_subject_file(path, PreparedSubject(groups, attrs))


@pytest.fixture
def dataset(tmp_path) -> dict:
    """Subject 1 × ROIs VC, V1 (NSD-like provenance, averaged train repeats) and subject 2 × VC
    (an older file: no train_repeats, no source_info); images with unpaired but no gallery."""
    root = tmp_path / "results" / "ds"
    root.mkdir(parents=True)
    _images(root / "images.h5", {"train": 12, "test": 5, "unpaired": 3})
    info = {"sessions": [3, 1, 2, 5, 7, 8, 9], "beta_version": "betas_fithrf_GLMdenoise_RR", "format": "nsd", "grid": [81, 104, 83]}
    units = {
        ("1", "VC"): {"train_index": list(range(12)), "trial_index": [0, 1, 2, 3, 4] * 3 + [0, 2],
                      "n_voxels": 30, "imagery": 4, "unlabeled": 6,
                      "attrs": {"n_voxels": 30, "train_repeats": "average", "normalization": "run",
                                "source_info": json.dumps(info), "subject": "1", "roi": "VC"}},
        ("1", "V1"): {"train_index": list(range(12)), "trial_index": [0, 1, 2, 3, 4] * 3 + [0, 2], "n_voxels": 9,
                      "attrs": {"n_voxels": 9, "train_repeats": "average", "normalization": "run",
                                "source_info": json.dumps(info)}},
        ("2", "VC"): {"train_index": [3, 3, 4, 0, 0, 0, 7, 1, 1, 11], "trial_index": [4, 3, 2, 1, 0, 4, 3, 2, 1, 0, 4],
                      "n_voxels": 20, "attrs": {"n_voxels": 20, "normalization": "train"}},
    }  # fmt: skip
    paths = []
    for (s, roi), spec in units.items():
        path = root / f"sub-{s}" / f"roi-{roi}" / "data.h5"
        path.parent.mkdir(parents=True)
        _subject(path, **spec)
        paths.append(path)
    return {"root": root, "units": units, "paths": paths}


def test_card_has_one_row_per_subject_roi_and_every_column(dataset):
    card = data_card(dataset["root"] / "images.h5", dataset["paths"], "ds", "god_bdata")
    assert list(card.columns) == EXPECTED_COLUMNS == COLUMNS
    assert len(card) == 3
    assert list(zip(card["subject"], card["roi"])) == list(dataset["units"])
    for (s, roi), spec in dataset["units"].items():
        row = card[(card["subject"] == s) & (card["roi"] == roi)].iloc[0]
        counts = sorted(Counter(spec["trial_index"]).values())
        mid = len(counts) // 2
        median = counts[mid] if len(counts) % 2 else (counts[mid - 1] + counts[mid]) / 2
        assert row["dataset"] == "ds" and row["format"] == "god_bdata"
        assert row["n_voxels"] == spec["n_voxels"]
        assert row["train_samples"] == len(spec["train_index"])
        assert row["train_images"] == len(set(spec["train_index"]))
        assert row["test_images"] == len(set(spec["trial_index"]))
        assert row["test_trials"] == len(spec["trial_index"])
        assert (row["test_repeats_min"], row["test_repeats_median"], row["test_repeats_max"]) == (counts[0], median, counts[-1])
        assert row["imagery_images"] == spec.get("imagery", 0)
        assert row["unlabeled_samples"] == spec.get("unlabeled", 0)
        assert row["normalization"] == spec["attrs"]["normalization"]
        assert (row["images_train"], row["images_test"], row["images_unpaired"], row["images_gallery"]) == (12, 5, 3, 0)
        assert row["image_size"] == 8
    sub1 = card[card["subject"] == "1"]
    assert set(sub1["train_repeats"]) == {"average"}
    assert set(sub1["sessions"]) == {"1-3, 5, 7-9"}
    assert set(sub1["beta_version"]) == {"betas_fithrf_GLMdenoise_RR"}
    # spot values, written out by hand: 17 trials of 5 images, images 0 and 2 seen 4 times
    vc = card.iloc[0]
    assert (vc["test_trials"], vc["test_repeats_min"], vc["test_repeats_median"], vc["test_repeats_max"]) == (17, 3, 3, 4)
    old = card.iloc[2]
    assert (old["train_samples"], old["train_images"]) == (10, 6)
    assert (old["test_repeats_min"], old["test_repeats_median"], old["test_repeats_max"]) == (2, 2, 3)


def test_missing_attributes_take_their_defaults(dataset):
    card = data_card(dataset["root"] / "images.h5", dataset["paths"][2:], "ds", "god_npz")
    row = card.iloc[0]
    assert row["train_repeats"] == "single"  # older files have no train_repeats
    assert row["sessions"] == "" and row["beta_version"] == ""  # no source_info
    assert row["format"] == "god_npz"
    # source_info without those keys, and a file without n_voxels / normalization attributes
    path = dataset["root"] / "sub-3" / "roi-LVC" / "data.h5"
    path.parent.mkdir(parents=True)
    _subject(path, [0, 1], [0, 1, 2, 3, 4], n_voxels=7, attrs={"source_info": json.dumps({"format": "god_bdata"})})
    row = data_card(dataset["root"] / "images.h5", [path], "ds", "god_bdata").iloc[0]
    assert (row["subject"], row["roi"], row["n_voxels"]) == ("3", "LVC", 7)
    assert (row["sessions"], row["beta_version"], row["normalization"], row["train_repeats"]) == ("", "", "", "single")
    assert (row["test_repeats_min"], row["test_repeats_median"], row["test_repeats_max"]) == (1, 1, 1)


def test_image_size_from_the_image_shape_and_gallery_counts(tmp_path):
    _images(tmp_path / "images.h5", {"train": 4, "test": 2, "gallery": 9}, size=16, with_size_attr=False)
    path = tmp_path / "sub-1" / "roi-VC" / "data.h5"
    path.parent.mkdir(parents=True)
    _subject(path, [0, 1, 2, 3], [0, 1, 0, 1], n_voxels=5, attrs={"n_voxels": 5})
    row = data_card(tmp_path / "images.h5", [path], "x", "nsd").iloc[0]
    assert (row["images_train"], row["images_test"], row["images_unpaired"], row["images_gallery"]) == (4, 2, 0, 9)
    assert row["image_size"] == 16


@pytest.mark.parametrize(
    "sessions, text",
    [([1, 2, 3], "1-3"), (list(range(1, 38)), "1-37"), ([5, 1, 2, 3], "1-3, 5"), ([4], "4"), ([], ""),
     (None, ""), ([2, 2, 3], "2-3"), ([1, 3, 5], "1, 3, 5"), (["01", "02"], "1-2"), (["a", "b"], "a, b")],
)  # fmt: skip
def test_sessions_render_as_ranges(sessions, text):
    assert format_sessions(sessions) == text


def test_missing_and_unreadable_files_fail_with_one_line_naming_the_file(dataset, tmp_path):
    missing = dataset["root"] / "sub-9" / "roi-VC" / "data.h5"
    with pytest.raises(InputError) as err:
        data_card(dataset["root"] / "images.h5", [*dataset["paths"], missing], "ds", "god_bdata")
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError) as err:
        data_card(tmp_path / "nope.h5", dataset["paths"], "ds", "god_bdata")
    assert str(tmp_path / "nope.h5") in str(err.value) and "\n" not in str(err.value)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an HDF5 file\n" * 50)
    with pytest.raises(InputError) as err:
        data_card(dataset["root"] / "images.h5", [junk], "ds", "god_bdata")
    assert str(junk) in str(err.value) and "\n" not in str(err.value)


def test_written_csv_round_trips_and_no_partial_file_on_error(dataset, tmp_path):
    out = tmp_path / "report" / "data_cards" / "ds.csv"
    write_data_card(str(dataset["root"] / "images.h5"), [str(p) for p in dataset["paths"]], "ds", "god_bdata", str(out))
    back = pd.read_csv(out, dtype={"subject": str, "sessions": str}, keep_default_na=False)
    assert list(back.columns) == EXPECTED_COLUMNS and len(back) == 3
    assert back["sessions"].tolist() == ["1-3, 5, 7-9", "1-3, 5, 7-9", ""]
    bad = tmp_path / "bad.csv"
    with pytest.raises(InputError):
        write_data_card(str(dataset["root"] / "images.h5"), [str(tmp_path / "none.h5")], "ds", "god_bdata", str(bad))
    assert not bad.exists() and not list(tmp_path.glob(".bad.csv*"))


def test_module_is_torch_free():
    code = "import sys; import fmrirecon.report.data_card; sys.exit('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO / "workflow", capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr or "fmrirecon.report.data_card imports torch"
