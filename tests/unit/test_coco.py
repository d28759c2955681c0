"""Captions and objects of NSD's COCO images (``readers/coco.py``, NSD option ``coco_annotations``).

The annotation files are written here by hand in COCO-2017's format, and every expectation is
spelled out from them; the simulated NSD tree is then checked through the nsd reader, the
prepared ``images.h5`` and back.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from fmrirecon.config import validate_config
from fmrirecon.data import prepared
from fmrirecon.data.readers import coco, get_reader
from fmrirecon.data.simulation import design_settings, generated_dataset, nsd_design
from fmrirecon.data.simulation.dataset import simulate_dataset
from fmrirecon.errors import InputError


def _write(root, split_of=None, drop_caption_image=False):
    """nsdIds 0, 1, 2 → cocoIds 500 (train), 501 (train), 900 (val)."""
    split_of = split_of or {500: "train2017", 501: "train2017", 900: "val2017"}
    expt = root / "nsddata/experiments/nsd"
    expt.mkdir(parents=True)
    pd.DataFrame({"cocoId": list(split_of), "cocoSplit": list(split_of.values()),
                  "cropBox": ["(0, 0, 0.1, 0.1)", "(0.2, 0.2, 0, 0)", "(0, 0, 0, 0)"], "nsdId": [0, 1, 2]}).to_csv(
        expt / "nsd_stim_info_merged.csv")  # fmt: skip
    ann = root / "annotations"
    ann.mkdir()
    cats = [{"id": 3, "name": "car", "supercategory": "vehicle"}, {"id": 18, "name": "dog", "supercategory": "animal"}]
    train_images = [{"id": 500, "width": 640, "height": 480}, {"id": 501, "width": 200, "height": 100}]
    caps = [{"id": 7, "image_id": 500, "caption": "A dog in a car. "}, {"id": 2, "image_id": 500, "caption": "a dog"},
            {"id": 9, "image_id": 501, "caption": "an empty road"}]  # fmt: skip
    if drop_caption_image:
        train_images = train_images[:1]
    inst = [{"id": 1, "image_id": 500, "category_id": 18, "bbox": [10, 20, 64, 48], "area": 1.0, "iscrowd": 0},
            {"id": 4, "image_id": 500, "category_id": 3, "bbox": [0, 0, 320, 240], "area": 1.0, "iscrowd": 1}]  # fmt: skip
    (ann / "captions_train2017.json").write_text(json.dumps({"images": train_images, "annotations": caps}))
    (ann / "instances_train2017.json").write_text(json.dumps({"images": train_images, "annotations": inst,
                                                              "categories": cats}))  # fmt: skip
    val = [{"id": 900, "width": 50, "height": 50}]
    (ann / "captions_val2017.json").write_text(json.dumps({"images": val, "annotations": [
        {"id": 1, "image_id": 900, "caption": "a val image"}]}))  # fmt: skip
    (ann / "instances_val2017.json").write_text(json.dumps({"images": val, "annotations": [], "categories": cats}))
    return expt / "nsd_stim_info_merged.csv", ann


def test_captions_and_objects_are_joined_on_coco_id(tmp_path):
    info, ann = _write(tmp_path)
    captions, objects = coco.annotate(np.array([2, 0, 1]), info, ann)
    assert captions == [["a val image"], ["a dog", "A dog in a car."], ["an empty road"]]  # annotation-id order
    assert objects[0] == [] and objects[2] == []
    dog, car = objects[1]
    assert (dog["category"], dog["category_id"], dog["bbox"], dog["iscrowd"]) == ("dog", 18, [10, 20, 64, 48], 0)
    assert dog["area_fraction"] == pytest.approx(64 * 48 / (640 * 480)) and car["area_fraction"] == pytest.approx(0.25)
    assert car["iscrowd"] == 1 and dog["crop_box"] == "(0, 0, 0.1, 0.1)"


@pytest.mark.parametrize("problem, pattern", [
    ("no_info", r"NSD stimulus information not found: .*nsd_stim_info_merged\.csv"),
    ("no_val", r"COCO annotation file not found: .*captions_val2017\.json"),
    ("not_json", r"captions_train2017\.json: not a JSON file"),
    ("not_coco", r"instances_train2017\.json: not COCO's format, key\(s\) \['categories'\] missing"),
    ("unknown_coco_id", r"captions_train2017\.json: cocoId 501 \(nsdId 1\) is not among its images"),
    ("unknown_nsd_id", r"nsd_stim_info_merged\.csv: nsdId 7 not listed"),
])  # fmt: skip
def test_bad_annotations_fail_with_one_line_naming_the_file(tmp_path, problem, pattern):
    info, ann = _write(tmp_path, drop_caption_image=problem == "unknown_coco_id")
    ids = np.array([0, 1, 7] if problem == "unknown_nsd_id" else [0, 1, 2])
    if problem == "no_info":
        info.unlink()
    elif problem == "no_val":
        (ann / "captions_val2017.json").unlink()
    elif problem == "not_json":
        (ann / "captions_train2017.json").write_text("{not json")
    elif problem == "not_coco":
        data = json.loads((ann / "instances_train2017.json").read_text())
        del data["categories"]
        (ann / "instances_train2017.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=pattern) as e:
        coco.annotate(ids, info, ann)
    assert "\n" not in str(e.value)


def test_the_option_is_a_folder_path():
    from fmrirecon.data.readers import nsd

    assert nsd.parse_options({"coco_annotations": "coco/annotations"})["coco_annotations"] == "coco/annotations"
    with pytest.raises(InputError, match=r"options\.coco_annotations: '\.\./x' is not a folder path"):
        nsd.parse_options({"coco_annotations": "../x"}, "options")


def test_the_simulated_nsd_tree_carries_its_captions_and_boxes_into_images_h5(tmp_path):
    sim = {"design": "nsd", "image_size": 32,
           "nsd": {"n_shared_images": 6, "shared_repeats": 2, "images_per_subject": 20, "sessions": 2,
                   "trials_per_session": 20, "runs_per_session": 2, "n_categories": 8},
           "voxels": {"V1": 10, "V2": 10, "V3": 10, "V4": 10, "LOC": 10, "FFA": 6, "PPA": 6},
           "subjects": {"1": {"noise_sd": 0.5}}}  # fmt: skip
    dataset = {"name": "simnsd", "format": "simulated", "read_as": "nsd", "subjects": ["1"], "rois": ["nsdgeneral"]}
    cfg = validate_config({"simulation": copy.deepcopy(sim), "datasets": [dataset],
                           "methods": {"ridge": {"family": "ridge", "target_size": 8}}})  # fmt: skip
    settings = design_settings(cfg["simulation"])
    raw = tmp_path / "raw"
    simulate_dataset(settings, 0, ["1"], raw)
    ds = generated_dataset(cfg["datasets"][0], str(raw), settings)
    stimuli = get_reader("nsd").read_stimuli(ds, str(raw), 32)
    folder = raw / nsd_design.ANNOTATIONS  # what the simulator wrote, read here without the reader
    caps = json.loads((folder / "captions_train2017.json").read_text())["annotations"]
    inst = json.loads((folder / "instances_train2017.json").read_text())["annotations"]
    for part in (stimuli.train, stimuli.test):
        for i, (nsd_id, c, o) in enumerate(zip(part.stimulus_id.astype(int), part.captions, part.objects)):
            assert c == [a["caption"] for a in sorted(caps, key=lambda a: a["id"]) if a["image_id"] == nsd_id]
            assert [x["bbox"] for x in o] == [a["bbox"] for a in inst if a["image_id"] == nsd_id]
            assert all(0 < x["area_fraction"] <= 1 for x in o) and c and o, (part, i)
    out = tmp_path / "images.h5"
    prepared.write_images_file(out, stimuli, {})
    back = prepared.read_images_file(out, with_images=False)
    assert back.test.captions == stimuli.test.captions and back.train.objects == stimuli.train.objects
