"""Captions and object instances of COCO images (NSD's stimuli are COCO-2017 images).

NSD's ``nsddata/experiments/nsd/nsd_stim_info_merged.csv`` gives each ``nsdId`` its ``cocoId``
and ``cocoSplit`` (``train2017`` / ``val2017``); COCO-2017's ``captions_<split>.json`` and
``instances_<split>.json`` (from cocodataset.org, not part of NSD) give per image its captions and
per object its category and box. This module joins them:

- ``captions``: the image's caption strings in annotation-id order (COCO has ~5 per image);
- ``objects``: per instance ``{"category": name, "category_id": int, "bbox": [x, y, w, h],
  "area_fraction": w·h / (W·H), "iscrowd": 0/1}``; ``bbox`` is in pixels of the *original* COCO
  image (W × H from the JSON's ``images``), not of NSD's square crop (the CSV's ``cropBox`` says
  how NSD cropped; it is kept beside them as ``crop_box``).

Only plain JSON and CSV are read. A file that is missing, not COCO's format, or a ``cocoId`` that
the annotations do not list, is one line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import InputError

STIM_INFO = "nsddata/experiments/nsd/nsd_stim_info_merged.csv"


@dataclass
class CocoIndex:
    """Annotations of one COCO split: per image id its captions, objects and size."""

    captions: dict[int, list[str]] = field(default_factory=dict)
    objects: dict[int, list[dict]] = field(default_factory=dict)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)


def _load_json(path: Path, keys: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise InputError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a JSON file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise InputError(f"{path}: not COCO's format, key(s) {missing} missing")
    return data


def load_split(folder: Path, split: str) -> CocoIndex:
    """Read ``captions_<split>.json`` and ``instances_<split>.json`` of ``folder``."""
    index = CocoIndex()
    caps_path, inst_path = folder / f"captions_{split}.json", folder / f"instances_{split}.json"
    caps = _load_json(caps_path, ("images", "annotations"))
    inst = _load_json(inst_path, ("images", "annotations", "categories"))
    try:
        for im in caps["images"] + inst["images"]:
            index.sizes[int(im["id"])] = (int(im["width"]), int(im["height"]))
        for a in sorted(caps["annotations"], key=lambda a: int(a["id"])):
            index.captions.setdefault(int(a["image_id"]), []).append(str(a["caption"]).strip())
        names = {int(c["id"]): str(c["name"]) for c in inst["categories"]}
        for a in sorted(inst["annotations"], key=lambda a: int(a["id"])):
            image, (x, y, w, h) = int(a["image_id"]), (float(v) for v in a["bbox"])
            width, height = index.sizes.get(image, (0, 0))
            index.objects.setdefault(image, []).append({
                "category": names[int(a["category_id"])], "category_id": int(a["category_id"]),
                "bbox": [x, y, w, h], "area_fraction": w * h / (width * height) if width and height else float("nan"),
                "iscrowd": int(a.get("iscrowd", 0)),
            })  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{inst_path} / {caps_path}: not COCO's format ({type(exc).__name__}: {exc})") from exc
    return index


def read_stim_info(path: Path) -> pd.DataFrame:
    """``nsdId`` → ``cocoId``, ``cocoSplit``, ``cropBox`` (indexed by nsdId)."""
    if not path.is_file():
        raise InputError(f"NSD stimulus information not found: {path} (needed to join COCO annotations on cocoId)")
    try:
        df = pd.read_csv(path, usecols=lambda c: c in ("nsdId", "cocoId", "cocoSplit", "cropBox"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the stimulus CSV ({exc})") from exc
    missing = [c for c in ("nsdId", "cocoId", "cocoSplit") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: column(s) {missing} missing (expected nsdId, cocoId, cocoSplit)")
    return df.set_index("nsdId")


def annotate(nsd_ids: np.ndarray, stim_info: Path, folder: Path) -> tuple[list[list[str]], list[list[dict]]]:
    """(captions, objects) of each image ``nsd_ids`` (0-based nsdIds), in that order."""
    info = read_stim_info(stim_info)
    absent = [int(i) for i in nsd_ids if int(i) not in info.index]
    if absent:
        raise InputError(f"{stim_info}: nsdId {absent[0]} not listed ({len(absent)} images missing)")
    rows = info.loc[[int(i) for i in nsd_ids]]
    splits = {s: load_split(folder, s) for s in sorted(set(rows["cocoSplit"].astype(str)))}
    captions, objects = [], []
    for nsd, (coco, split) in zip(nsd_ids.tolist(), zip(rows["cocoId"].astype(int), rows["cocoSplit"].astype(str))):
        index = splits[split]
        if coco not in index.sizes:
            raise InputError(f"{folder / f'captions_{split}.json'}: cocoId {coco} (nsdId {nsd}) is not among its images")
        crop = rows.loc[nsd, "cropBox"] if "cropBox" in rows.columns else None
        objs = [dict(o, crop_box=str(crop)) if crop is not None and not pd.isna(crop) else dict(o)
                for o in index.objects.get(coco, [])]  # fmt: skip
        captions.append(list(index.captions.get(coco, [])))
        objects.append(objs)
    return captions, objects
