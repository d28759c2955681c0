"""Stimulus images: GOD image lists, image folders and the MinD-Vis / SelfSuperReconst npz files.

GOD stimulus ids are floats ``synset + image/1e6`` (``1518878.010042``) whose text forms differ
between files (trailing zeros dropped in the TSVs), so they are compared as ``round(id * 1e6)``
integers, never as strings (datasets.md §1.1). All images come out as uint8 (N, S, S, 3),
centre-cropped to a square and resized with PIL's LANCZOS filter.
"""

from __future__ import annotations

import csv
import math
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import InputError
from .base import ImageSplit, StimulusSet

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


# -- ids ----------------------------------------------------------------------------------------


def stimulus_id_key(ids) -> np.ndarray:
    """(N,) int64 ``round(id * 1e6)``; NaN ids become -1."""
    ids = np.asarray(ids, dtype=np.float64)
    out = np.full(ids.shape, -1, dtype=np.int64)
    ok = np.isfinite(ids)
    out[ok] = np.round(ids[ok] * 1e6).astype(np.int64)
    return out


def stimulus_id_from_name(name: str) -> float:
    """``n01518878_10042`` (extension allowed) → ``1518878.010042``; NaN if not that form."""
    m = re.fullmatch(r"n(\d+)_(\d+)", _strip_extension(str(name).strip()))
    return int(m.group(1)) + int(m.group(2)) / 1e6 if m else float("nan")


def find_stimulus_rows(ids, reference_ids) -> np.ndarray:
    """(N,) int64 row of each id in ``reference_ids`` (first match), -1 where absent or NaN."""
    ref = stimulus_id_key(reference_ids)
    lookup: dict[int, int] = {}
    for row, key in enumerate(ref.tolist()):
        if key >= 0:
            lookup.setdefault(key, row)
    return np.array([lookup.get(k, -1) if k >= 0 else -1
                     for k in stimulus_id_key(ids).tolist()], dtype=np.int64)


# -- lists --------------------------------------------------------------------------------------


def _as_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_image_list(csv_path) -> tuple[np.ndarray, np.ndarray]:
    """Read a GOD image list → (stimulus_id (N,) float64, names (N,) str without extension).

    Accepts ``imageID_{training,test}.csv`` (no header, ``1518878.010042,"n01518878_10042.JPEG"``),
    MinD-Vis ``imagenet_*_label.csv`` (same rows, unquoted) and the tab-separated
    ``stimulus_ImageNet{Training,Test}.tsv`` (name, id, category_index, image_index; optional
    header). Per row, the id is the first numeric field and the name the first non-numeric one.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise InputError(f"image list not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: image list is not UTF-8 text: {exc}") from exc
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    ids, names = [], []
    for line_no, row in enumerate(csv.reader(lines, delimiter=delimiter), 1):
        fields = [f.strip() for f in row if f.strip()]
        if not fields:
            continue
        numbers = [v for v in (_as_float(f) for f in fields) if v is not None]
        words = [f for f in fields if _as_float(f) is None]
        if not numbers and line_no == 1:
            continue  # header row
        if not numbers or not words:
            raise InputError(f"{path}: line {line_no} {row!r} is not 'stimulus_id,name'")
        ids.append(numbers[0])
        names.append(_strip_extension(words[0]))
    if not ids:
        raise InputError(f"{path}: image list is empty")
    return np.array(ids, dtype=np.float64), np.array(names, dtype=str)


def _strip_extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return stem if dot and "." + ext.lower() in IMAGE_EXTENSIONS else name


# -- pixels -------------------------------------------------------------------------------------


def square_resize(image: Image.Image, image_size: int) -> np.ndarray:
    """Centre-crop to a square, resize to ``image_size`` (LANCZOS) → (S, S, 3) uint8."""
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != image_size:
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _folder_index(folder: Path) -> dict[str, Path]:
    """Lower-cased file name and lower-cased stem (image files only) → path."""
    index: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        index.setdefault(p.name.lower(), p)
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            index.setdefault(p.stem.lower(), p)
    return index


def load_image_folder(folder, names, image_size: int, *, ids=None,
                      list_file=None) -> np.ndarray:
    """Load ``names`` from ``folder`` → (N, S, S, 3) uint8.

    A name matches its own file name (with its listed extension) or its stem with any of
    .JPEG/.jpg/.jpeg/.png, case-insensitively. ``ids`` and ``list_file`` only improve the
    error message for a missing image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}"
                         + (f" (images listed in {list_file})" if list_file else ""))
    index = _folder_index(folder)
    out = np.empty((len(names), image_size, image_size, 3), dtype=np.uint8)
    for i, name in enumerate(names):
        name = str(name)
        path = index.get(name.lower()) or index.get(_strip_extension(name).lower())
        if path is None:
            what = f"stimulus id {float(ids[i])!r} ({name})" if ids is not None else f"image {name!r}"
            raise InputError(f"{what} not found in {folder} (expected {name}.JPEG/.jpg/.png"
                             + (f"; listed in {list_file})" if list_file else ")"))
        out[i] = open_image(path, image_size)
    return out


def open_image(path: Path, image_size: int) -> np.ndarray:
    """One image file, centre-cropped and resized; InputError naming the file if it is unreadable."""
    try:
        with Image.open(path) as image:
            return square_resize(image, image_size)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc


def _split(images: np.ndarray, names, ids) -> ImageSplit:
    ids = np.asarray(ids, dtype=np.float64)
    category = np.where(np.isfinite(ids), np.floor(np.nan_to_num(ids, nan=-1.0)), -1)
    return ImageSplit(images=images, names=np.asarray(names, dtype=str), stimulus_id=ids,
                      category=category.astype(np.int64))


def load_unpaired_folder(folder, image_size: int) -> ImageSplit:
    """All image files of ``folder`` sorted by name; stimulus_id NaN, category -1."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"unpaired image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"unpaired image folder {folder} has no .JPEG/.jpg/.png files")
    images = np.stack([open_image(p, image_size) for p in files])
    return _split(images, [p.stem for p in files], np.full(len(files), np.nan))


def load_gallery_folder(folder, image_size: int) -> ImageSplit:
    """A class gallery: image files named ``n<synset>_<number>``; category = the synset number.

    Used for class-centroid classification (paper 002): other images of each category,
    including the test categories, never shown in the fMRI experiment.
    """
    split = load_unpaired_folder(folder, image_size)
    ids = np.array([stimulus_id_from_name(n) for n in split.names])
    if np.isnan(ids).any():
        bad = split.names[np.isnan(ids)][0]
        raise InputError(f"gallery image {bad!r} in {folder} is not named n<synset>_<number>")
    split.stimulus_id = ids
    split.category = np.floor(ids).astype(np.int64)
    return split


# -- datasets -----------------------------------------------------------------------------------

_GOD_LISTS = {"training": ("imageID_training.csv", "stimulus_ImageNetTraining.tsv"),
              "test": ("imageID_test.csv", "stimulus_ImageNetTest.tsv")}


def _god_list(root: Path, split: str) -> Path:
    for name in _GOD_LISTS[split]:
        if (root / name).is_file():
            return root / name
    raise InputError(f"GOD image list not found: {root / _GOD_LISTS[split][0]} "
                     f"(or {_GOD_LISTS[split][1]})")


def read_god_stimuli(root, image_size: int, unpaired_folder=None) -> StimulusSet:
    """GOD images from ``root``: ``imageID_{training,test}.csv`` + ``images/{training,test}/``.

    Rows follow the list order (the order fMRI ``image_index`` refers to); category is
    ``int(floor(stimulus_id))``. ``unpaired_folder`` adds every image file there as
    ``StimulusSet.unpaired`` (stimulus_id NaN, category -1).
    """
    root = Path(root)
    splits = {}
    for split in ("training", "test"):
        list_file = _god_list(root, split)
        ids, names = read_image_list(list_file)
        images = load_image_folder(root / "images" / split, names, image_size, ids=ids,
                                   list_file=list_file)
        splits[split] = _split(images, names, ids)
    unpaired = load_unpaired_folder(unpaired_folder, image_size) if unpaired_folder else None
    return StimulusSet(train=splits["training"], test=splits["test"], unpaired=unpaired,
                       source=root)


def _npz_images(npz, key: str, path: Path, image_size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 at ``image_size`` from an npz array (uint8 0-255 or float 0-1)."""
    if key not in npz.files:
        raise InputError(f"{path}: key {key!r} missing (keys: {', '.join(npz.files)})")
    try:
        x = np.asarray(npz[key])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: cannot read {key} (corrupt file?): {exc}") from exc
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    elif x.ndim == 4 and x.shape[-1] != 3 and x.shape[1] == 3:
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"{path}: {key} has shape {x.shape}, expected (N, H, W, 3)")
    if x.dtype != np.uint8:
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise InputError(f"{path}: {key} contains NaN or inf")
        scale = 255.0 if x.max(initial=0.0) <= 1.0 else 1.0
        x = np.clip(np.round(x * scale), 0, 255).astype(np.uint8)
    if x.shape[1:3] != (image_size, image_size):
        x = np.stack([square_resize(Image.fromarray(im), image_size) for im in x])
    return x


def read_npz_stimuli(images_npz, image_size: int, train_list=None,
                     test_list=None) -> StimulusSet:
    """Images from MinD-Vis ``images_256.npz`` (uint8) or SelfSuperReconst ``images_112.npz``.

    ``train_images`` / ``test_images`` become uint8 (N, S, S, 3). Names and ids come from the
    optional list files (``imageID_*.csv`` or ``imagenet_*_label.csv`` rows, in npz order);
    without a list, names are ``train_0000`` / ``test_0000`` and ids NaN.
    """
    path = Path(images_npz)
    if not path.is_file():
        raise InputError(f"image npz not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is not a readable .npz file: {exc}") from exc
    splits = []
    with npz:
        for key, prefix, list_file in (("train_images", "train", train_list),
                                       ("test_images", "test", test_list)):
            images = _npz_images(npz, key, path, image_size)
            if list_file is not None:
                ids, names = read_image_list(list_file)
                if len(ids) != len(images):
                    raise InputError(f"{path}: {key} has {len(images)} images but {list_file} "
                                     f"lists {len(ids)}")
            else:
                ids = np.full(len(images), np.nan)
                names = [f"{prefix}_{i:04d}" for i in range(len(images))]
            splits.append(_split(images, names, ids))
    return StimulusSet(train=splits[0], test=splits[1], source=path)
