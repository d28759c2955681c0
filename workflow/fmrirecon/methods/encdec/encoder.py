"""Rule ``pretrain_encoder``: the image -> fMRI encoder papers 002 and 000 share."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ...data import prepared
from ...data.atomic import atomic_path
from ...errors import InputError
from ...losses import fmri_loss
from ...models.encoder import ImageEncoder, random_shift
from ...train.device import select_device
from ...train.files import save_model
from ...train.loop import Trainer
from ...train.records import write_loss_log, write_train_summary
from ..common import batched, finite_fmri, fingerprint, image_tensor

log = logging.getLogger(__name__)


def load_encoder(path: str, n_voxels: int | None, device) -> ImageEncoder:
    """The trained, frozen encoder at ``path``; fails when its voxel count differs from the data's."""
    enc = ImageEncoder.from_file(path)
    if n_voxels is not None and enc.hparams["n_voxels"] != n_voxels:
        raise InputError(
            f"{path}: encoder predicts {enc.hparams['n_voxels']} voxels but the fMRI has {n_voxels} "
            "(was it trained for another subject or ROI?)"
        )
    enc.to(device).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def pretrain_encoder(data: str, images: str, settings: dict, training: dict, seed: int, checkpoint_dir: str,
                     model: str, loss_log: str, accuracy: str, train_summary: str = "") -> None:  # fmt: skip
    """Fit E(image) -> fMRI on the training pairs; write the model, its loss log and its per-voxel
    test accuracy (Pearson r, and r over the voxel's noise ceiling where known)."""
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test"))
    y = finite_fmri(d, "train/fmri", data)
    n_vox = y.shape[1]
    device = select_device(training["device"])
    torch.manual_seed(seed)  # the initial weights
    enc = ImageEncoder(n_vox, settings["size"], settings["backbone"], settings["weights_dir"]).to(device)
    x_img = image_tensor(stim.train.images)  # unique training images
    rows = torch.from_numpy(d["train/image_index"].astype(np.int64))
    y_t = torch.from_numpy(y)
    trainer = Trainer(
        name="pretrain_encoder", modules={"encoder": enc}, settings=settings["train"],
        training=training, checkpoint_dir=checkpoint_dir, seed=seed, device=device,
        fingerprint=fingerprint("pretrain_encoder", settings, seed, [data, images], training, device),
    )  # fmt: skip

    cached = None
    if settings["max_shift"] == 0:  # no augmentation: the frozen backbone runs once per image
        cached = batched(lambda x: list(enc.backbone_features(x)), x_img, device=device)

    def step(idx, gen):
        if cached is not None:
            pred = enc.from_features([f[rows[idx]].to(device) for f in cached])
        else:
            pred = enc(random_shift(x_img[rows[idx]], settings["max_shift"], gen).to(device))
        fit = fmri_loss(pred.float(), y_t[idx].to(device), settings["alpha"])
        tv = enc.tv()
        return {"loss": fit + settings["tv_weight"] * tv, "fmri": fit, "tv_spatial": tv}

    history = trainer.fit(len(y), step)
    enc.eval()
    pred = batched(enc, image_tensor(stim.test.images[d["test/image_index"]]), device=device).numpy()
    table = voxel_accuracy(pred, d["test/fmri"], d.groups["voxels"].get("noise_ceiling"))
    hp = {**enc.hparams, "weights_dir": settings["weights_dir"], "seed": seed,
          "median_r": table["median_r"], "median_r_normalised": table["median_r_normalised"]}  # fmt: skip
    save_model(model, {"encoder": enc}, hp)
    write_loss_log(loss_log, history)
    with atomic_path(accuracy) as tmp, open(tmp, "w") as fh:
        fh.write("voxel\tr\tnoise_ceiling\tr_normalised\n")
        for i, (r, nc, rn) in enumerate(zip(table["r"], table["ceiling"], table["r_normalised"])):
            fh.write(f"{i}\t{r:.6f}\t{nc:.6f}\t{rn:.6f}\n")
    log.info("encoder test prediction: median r %.3f, median r/ceiling %.3f",
             table["median_r"], table["median_r_normalised"])  # fmt: skip
    if train_summary:
        write_train_summary(train_summary, trainer, {"stage_settings": settings})
    trainer.finish()


def voxel_accuracy(pred: np.ndarray, true: np.ndarray, ceiling: np.ndarray | None) -> dict:
    """Per-voxel Pearson r over test images, and r divided by the voxel's noise ceiling."""
    pc = pred - pred.mean(0)
    tc = true - true.mean(0)
    denom = np.sqrt((pc**2).sum(0) * (tc**2).sum(0))
    r = np.where(denom > 0, (pc * tc).sum(0) / np.maximum(denom, 1e-12), 0.0)
    if ceiling is None:
        ceiling = np.full_like(r, np.nan)
    ceiling = np.asarray(ceiling, np.float64)
    rn = np.where(ceiling > 0, r / np.where(ceiling > 0, ceiling, 1.0), np.nan)
    return {
        "r": r, "ceiling": ceiling, "r_normalised": rn,
        "median_r": float(np.median(r)),
        "median_r_normalised": float(np.nanmedian(rn)) if np.isfinite(rn).any() else float("nan"),
    }  # fmt: skip
