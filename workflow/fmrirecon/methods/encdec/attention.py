"""Paper 000's foreground attention: rules ``make_label_maps`` (per dataset) and
``train_attention_decoder`` (fMRI -> F-attention map, per dataset × subject × ROI)."""

from __future__ import annotations

import json
import logging
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ...data import prepared
from ...data.atomic import atomic_path, write_json
from ...errors import InputError
from ...labels.foreground import clean_mask, iou, label_maps, saliency_maps
from ...models.decoders import AttentionDecoder
from ...train.device import select_device
from ...train.files import save_model
from ...train.loop import Trainer
from ...train.records import write_loss_log, write_train_summary
from ..common import batched, finite_fmri, fingerprint

log = logging.getLogger(__name__)


def read_label_maps(path: str, split: str, n_expected: int) -> np.ndarray:
    if not os.path.exists(path):
        raise InputError(f"{path}: label map file not found (run rule make_label_maps)")
    try:
        with h5py.File(path, "r") as f:
            maps = f[f"{split}/maps"][()]
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: no readable /{split}/maps ({exc})") from None
    if len(maps) != n_expected:
        raise InputError(f"{path}: {len(maps)} {split} label maps for {n_expected} {split} images")
    return maps


def load_attention_decoder(path: str, n_voxels: int, device) -> AttentionDecoder:
    """The trained, frozen attention decoder at ``path``, checked against the data's voxel count."""
    dec = AttentionDecoder.from_file(path)
    if dec.hparams["n_voxels"] != n_voxels:
        raise InputError(f"{path}: attention decoder expects {dec.hparams['n_voxels']} voxels, the fMRI has {n_voxels}")
    dec.to(device).eval()
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec


def make_label_maps(images: str, settings: dict, maps: str, summary: str) -> None:
    """Foreground label maps of the training and test images (CAM or saliency, cleaned), with
    their agreement with the true foreground where the dataset has one (simulated data)."""
    stim = prepared.read_images_file(images, splits=("train", "test"))
    result, groups = {"settings": settings}, {}
    for split in ("train", "test"):
        part = getattr(stim, split)
        sal = saliency_maps(part.images)  # the fallback finder, and the comparison below
        out, info = label_maps(part.images, settings, saliency=sal)
        groups[split] = out
        result[split] = {"n": len(out), "foreground_fraction": float((out > 0.5).mean()), **info}
        if part.foreground is not None:
            result[split]["iou_vs_truth"] = float(iou(out, part.foreground).mean())
            if settings["method"] == "cam":
                sal_masks = np.stack([clean_mask(m, settings) for m in sal])
                result[split]["iou_vs_truth_saliency"] = float(iou(sal_masks, part.foreground).mean())
        log.info("%s label maps: %s", split, result[split])
    with atomic_path(maps) as tmp, h5py.File(tmp, "w") as f:
        for split, group in groups.items():
            f.create_dataset(f"{split}/maps", data=group, compression="gzip", shuffle=True)
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)
    write_json(summary, result)


def train_attention_decoder(data: str, images: str, maps: str, settings: dict, training: dict, seed: int,
                            checkpoint_dir: str, model: str, loss_log: str, summary: str,
                            train_summary: str = "") -> None:  # fmt: skip
    """Fit fMRI -> label map on the training pairs; ``summary`` scores the decoded test maps
    (IoU and MSE against the label maps and, on simulated data, the true foreground; each with
    the same maps against other test images as the chance reference)."""
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test"))
    x = torch.from_numpy(finite_fmri(d, "train/fmri", data))
    device = select_device(training["device"])
    torch.manual_seed(seed)  # the initial weights
    dec = AttentionDecoder(x.shape[1], settings["size"]).to(device)
    side = dec.d["out"]
    train_maps = read_label_maps(maps, "train", len(stim.train.images))
    target = F.interpolate(torch.from_numpy(train_maps)[:, None], size=(side, side), mode="bilinear",
                           align_corners=False)  # fmt: skip
    rows = torch.from_numpy(d["train/image_index"].astype(np.int64))
    trainer = Trainer(
        name="train_attention_decoder", modules={"attention_decoder": dec},
        settings=settings["train"], training=training, checkpoint_dir=checkpoint_dir, seed=seed,
        device=device, fingerprint=fingerprint("train_attention_decoder", settings, seed, [data, maps], training, device),
    )  # fmt: skip

    def step(idx, gen):
        pred = dec(x[idx].to(device))
        mse = (pred.float() - target[rows[idx]].to(device)).pow(2).mean()
        return {"loss": mse}

    history = trainer.fit(len(x), step)
    dec.eval()
    test_fmri = torch.from_numpy(d["test/fmri"].astype(np.float32))
    decoded = batched(dec, test_fmri, device=device)[:, 0].numpy()
    test_rows = d["test/image_index"]
    size = stim.test.images.shape[1]
    up = F.interpolate(torch.from_numpy(decoded)[:, None], size=(size, size), mode="bilinear",
                       align_corners=False)[:, 0].numpy()  # fmt: skip
    test_maps = read_label_maps(maps, "test", len(stim.test.images))[test_rows]
    result = {
        "n_test": int(len(up)),
        "iou_vs_label_maps": float(iou(up, test_maps > 0.5).mean()),
        "mse_vs_label_maps": float(((up - test_maps) ** 2).mean()),
    }
    # chance reference: the same decoded maps against the label maps of other test images
    perm = np.roll(np.arange(len(up)), 1)
    result["iou_vs_label_maps_shuffled"] = float(iou(up, test_maps[perm] > 0.5).mean())
    if stim.test.foreground is not None:
        fg = stim.test.foreground[test_rows]
        result["iou_vs_truth"] = float(iou(up, fg).mean())
        result["iou_vs_truth_shuffled"] = float(iou(up, fg[perm]).mean())
    log.info("decoded test F-attention: %s", result)
    save_model(model, {"attention_decoder": dec}, {**dec.hparams, "seed": seed})
    write_loss_log(loss_log, history)
    write_json(summary, result)
    if train_summary:
        write_train_summary(train_summary, trainer, {"stage_settings": settings})
    trainer.finish()
