"""Rules ``train_decoder`` and ``reconstruct_decoder``: the decoders of paper 002 (family ``ssl``:
pairs + unpaired images E->D + unpaired fMRI D->E) and paper 000 (family ``loopencdec``: guided by
decoded F-attention, with the loop loss through the frozen encoder)."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from ...data import prepared
from ...errors import InputError
from ...losses import feature_mse, fmri_loss, image_loss, loop_loss
from ...models.backbone import LEVELS, Backbone
from ...models.decoders import GuidedDecoder, SSLDecoder
from ...train.device import select_device
from ...train.files import read_hparams, save_model
from ...train.loop import Trainer
from ...train.records import write_loss_log, write_train_summary
from ..common import batched, finite_fmri, fingerprint, image_tensor, to_uint8, write_reconstructions
from .attention import load_attention_decoder
from .encoder import load_encoder

log = logging.getLogger(__name__)


def _unpaired_fmri(d, kind: str) -> np.ndarray:
    if kind == "test":
        return d["test/fmri"]
    if kind == "test_trials":
        return d["test/fmri_trials"]
    if kind == "unlabeled":
        if "unlabeled" not in d.groups:
            raise InputError("unpaired_fmri: unlabeled, but the prepared data has no /unlabeled pool")
        return d["unlabeled/fmri"]
    return np.zeros((0, d["train/fmri"].shape[1]), np.float32)


def _decoder(family: str, n_vox: int, settings: dict):
    if family == "ssl":
        return SSLDecoder(n_vox, settings["size"])
    att = settings["attention"]
    return GuidedDecoder(n_vox, settings["size"], att["lambda"], att["mu"])


def train_decoder(method: str, family: str, data: str, images: str, encoder: str, attention: str,
                  settings: dict, training: dict, seed: int, checkpoint_dir: str, model: str,
                  loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Train one method's decoder with its family's losses (weights from ``settings``)."""
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test", "unpaired"))
    fmri = torch.from_numpy(finite_fmri(d, "train/fmri", data))
    n_vox = fmri.shape[1]
    device = select_device(training["device"])
    enc = load_encoder(encoder, n_vox, device)
    torch.manual_seed(seed)  # the initial weights
    dec = _decoder(family, n_vox, settings).to(device)
    out = dec.base * 8
    percept = Backbone(enc.hparams["backbone"], out, read_hparams(encoder).get("weights_dir", "")).to(device)
    levels = LEVELS[enc.hparams["backbone"]]["perceptual"]
    rows = torch.from_numpy(d["train/image_index"].astype(np.int64))
    train_imgs = image_tensor(stim.train.images, out)
    has_unpaired = stim.unpaired is not None and len(stim.unpaired.images) > 0
    unp_imgs = image_tensor(stim.unpaired.images, out) if has_unpaired else torch.zeros(0, 3, out, out)
    feats = lambda x: percept(x, levels)  # noqa: E731
    train_feats = batched(feats, train_imgs, device=device) if len(train_imgs) else []
    unp_feats = batched(feats, unp_imgs, device=device) if has_unpaired else []
    # E is frozen during decoder training: its outputs on fixed images are cached
    enc_train = batched(enc, image_tensor(stim.train.images), device=device)
    enc_unp = batched(enc, image_tensor(stim.unpaired.images), device=device) if has_unpaired else None
    pick = lambda fs, i: [f[i].to(device) for f in fs]  # noqa: E731
    modules = {"decoder": dec}
    fp = fingerprint("train_decoder", {"family": family, **settings}, seed, [data, images, encoder, attention],
                     training, device)  # fmt: skip
    trainer = Trainer(name=f"train_decoder[{method}]", modules=modules, settings=settings["train"],
                      training=training, checkpoint_dir=checkpoint_dir, fingerprint=fp, seed=seed,
                      device=device)  # fmt: skip
    bs = int(settings["train"]["batch_size"])
    if family == "ssl":
        w, wi = settings["losses"], settings["image_loss"]
        unp_fmri = torch.from_numpy(_unpaired_fmri(d, settings["unpaired_fmri"]).astype(np.float32))
        if w["ED"] > 0 and not has_unpaired:
            log.warning("no unpaired images in %s: the E-D term is off", images)
        if w["DE"] > 0 and len(unp_fmri) == 0:
            log.warning("no unpaired fMRI (%s): the D-E term is off", settings["unpaired_fmri"])

        def step(idx, gen):
            img = dec(fmri[idx].to(device))
            terms = image_loss(img, train_imgs[rows[idx]].to(device), feats(img), pick(train_feats, rows[idx]), wi)
            out_terms = {"D": terms["total"], "D_l1": terms["l1"], "D_perceptual": terms["perceptual"]}
            total = w["D"] * terms["total"]
            if w["ED"] > 0 and has_unpaired:
                j = torch.randint(0, len(unp_imgs), (bs,), generator=gen)
                img_ed = dec(enc_unp[j].to(device))
                ed = image_loss(img_ed, unp_imgs[j].to(device), feats(img_ed), pick(unp_feats, j), wi)
                out_terms["ED"] = ed["total"]
                total = total + w["ED"] * ed["total"]
            if w["DE"] > 0 and len(unp_fmri):
                k = torch.randint(0, len(unp_fmri), (bs,), generator=gen)
                r = unp_fmri[k].to(device)
                de = fmri_loss(enc(dec(r)).float(), r, settings["alpha"])
                out_terms["DE"] = de
                total = total + w["DE"] * de
            return {"loss": total, **out_terms}

    else:  # loopencdec
        w = settings["losses"]
        if dec.uses_attention:
            att = load_attention_decoder(attention, n_vox, device)
            fa_fmri = batched(att, fmri, device=device)
            fa_enc_train = batched(att, enc_train, device=device)
            fa_enc_unp = batched(att, enc_unp, device=device) if has_unpaired else None
        sel = lambda fa, i: fa[i].to(device) if dec.uses_attention else None  # noqa: E731

        def step(idx, gen):
            x = fmri[idx].to(device)
            target = pick(train_feats, rows[idx])
            img1 = dec(x, sel(fa_fmri, idx) if dec.uses_attention else None)
            img2 = dec(enc_train[rows[idx]].to(device), sel(fa_enc_train, rows[idx]) if dec.uses_attention else None)
            l_img = feature_mse(feats(img1), target) + feature_mse(feats(img2), target)
            terms = {"image": l_img}
            total = w["image"] * l_img
            if w["loop"] > 0:
                l_loop = loop_loss(enc, [img1, img2], x, settings["alpha"])
                terms["loop"] = l_loop
                total = total + w["loop"] * l_loop
            if w["imagenet"] > 0 and has_unpaired:
                j = torch.randint(0, len(unp_imgs), (bs,), generator=gen)
                img3 = dec(enc_unp[j].to(device), sel(fa_enc_unp, j) if dec.uses_attention else None)
                l_net = feature_mse(feats(img3), pick(unp_feats, j))
                terms["imagenet"] = l_net
                total = total + w["imagenet"] * l_net
            return {"loss": total, **terms}

    history = trainer.fit(len(fmri), step)
    used_test_fmri = family == "ssl" and settings["losses"]["DE"] > 0 and settings["unpaired_fmri"] in ("test", "test_trials")
    save_model(model, modules, {**dec.hparams, "family": family, "method": method, "seed": seed,
                                "used_test_fmri": used_test_fmri})  # fmt: skip
    write_loss_log(loss_log, history)
    if train_summary:
        write_train_summary(train_summary, trainer, {"stage_settings": settings})
    trainer.finish()


def reconstruct_decoder(method: str, data: str, images: str, decoder: str, attention: str, training: dict,
                        seed: int, recon: str) -> None:  # fmt: skip
    """Decode the test fMRI with a trained decoder (its family and sizes come from its file)."""
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("test",))
    x = torch.from_numpy(finite_fmri(d, "test/fmri", data))
    hp = read_hparams(decoder)
    if hp["n_voxels"] != x.shape[1]:
        raise InputError(f"{decoder}: decoder expects {hp['n_voxels']} voxels, the fMRI has {x.shape[1]}")
    device = select_device(training["device"])
    dec = (GuidedDecoder if "lambda" in hp else SSLDecoder).from_file(decoder)
    dec.to(device).eval()
    if getattr(dec, "uses_attention", False):
        att = load_attention_decoder(attention, hp["n_voxels"], device)
        imgs = batched(dec, x, batched(att, x, device=device), device=device)
    else:
        imgs = batched(dec, x, device=device)
    size = stim.test.images.shape[1]
    if imgs.shape[-1] != size:
        imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", align_corners=False)
    write_reconstructions(recon, to_uint8(imgs), d, stim.test.names, method=method, family=hp["family"], seed=seed,
                          transductive=bool(hp.get("used_test_fmri", False)))  # fmt: skip
