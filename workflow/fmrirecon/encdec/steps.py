"""Rule bodies of the encoder/decoder methods (papers 002 and 000).

``make_label_maps`` → ``pretrain_encoder`` → ``train_attention_decoder`` → ``train_decoder`` →
``reconstruct_decoder``. Each trains through :class:`fmrirecon.train.loop.Trainer` (resumable,
deterministic, preemption-safe) and writes its outputs atomically.
"""

from __future__ import annotations

import json
import logging
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ..config import config_hash
from ..data import prepared
from ..data.atomic import atomic_path, write_json
from ..errors import InputError
from ..labels.foreground import clean_mask, iou, label_maps, saliency_maps
from ..losses import feature_mse, fmri_loss, image_loss, loop_loss
from ..models.backbone import LEVELS, Backbone
from ..models.decoders import AttentionDecoder, GuidedDecoder, SSLDecoder
from ..models.encoder import ImageEncoder, random_shift
from ..train.device import select_device
from ..train.files import load_into, read_hparams, save_model
from ..train.loop import Trainer, write_loss_log

log = logging.getLogger("fmrirecon.encdec")


# -- helpers ----------------------------------------------------------------------------------
def _float_images(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if size and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _fingerprint(settings, seed, *paths) -> str:
    return config_hash(settings, seed, [prepared.sha256_file(p) for p in paths if p])


def _batched(fn, x: torch.Tensor, device, batch: int = 64) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            outs.append(fn(x[s : s + batch].to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0)


def _check_finite(name: str, arr: np.ndarray, where: str) -> None:
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: {name} contains NaN or inf values")


def load_encoder(path: str, n_voxels: int | None, device) -> ImageEncoder:
    """The trained encoder at ``path``; fails when its voxel count differs from the data's."""
    hp = read_hparams(path)
    if n_voxels is not None and hp["n_voxels"] != n_voxels:
        raise InputError(
            f"{path}: encoder predicts {hp['n_voxels']} voxels but the fMRI has {n_voxels} "
            "(was it trained for another subject or ROI?)"
        )
    enc = ImageEncoder(hp["n_voxels"], hp["size"], hp["backbone"], hp.get("weights_dir", ""))
    load_into(path, {"encoder": enc})
    enc.to(device).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def load_attention_decoder(path: str, n_voxels: int, device) -> AttentionDecoder:
    hp = read_hparams(path)
    if hp["n_voxels"] != n_voxels:
        raise InputError(f"{path}: attention decoder expects {hp['n_voxels']} voxels, the fMRI has {n_voxels}")
    dec = AttentionDecoder(hp["n_voxels"], hp["size"])
    load_into(path, {"attention_decoder": dec})
    dec.to(device).eval()
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec


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


# -- make_label_maps --------------------------------------------------------------------------
def make_label_maps(images: str, settings: dict, output: str, summary: str, figure: str) -> None:
    stim = prepared.read_images_file(images, splits=("train", "test"))
    result, groups = {"settings": settings}, {}
    for split in ("train", "test"):
        part = getattr(stim, split)
        sal = saliency_maps(part.images)  # the fallback finder, and the comparison below
        maps, info = label_maps(part.images, settings, saliency=sal)
        groups[split] = maps
        result[split] = {"n": len(maps), "foreground_fraction": float((maps > 0.5).mean()), **info}
        if part.foreground is not None:
            result[split]["iou_vs_truth"] = float(iou(maps, part.foreground).mean())
            if settings["method"] == "cam":
                sal_masks = np.stack([clean_mask(m, settings) for m in sal])
                result[split]["iou_vs_truth_saliency"] = float(iou(sal_masks, part.foreground).mean())
        log.info("%s label maps: %s", split, result[split])
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        for split, maps in groups.items():
            f.create_dataset(f"{split}/maps", data=maps, compression="gzip", shuffle=True)
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)
    write_json(summary, result)
    from ..report.figures import plot_label_maps

    plot_label_maps(stim.test.images, groups["test"], stim.test.foreground, figure, result["test"])


# -- pretrain_encoder -------------------------------------------------------------------------
def pretrain_encoder(data: str, images: str, settings: dict, training: dict, seed: int,
                     checkpoint: str, model: str, losses: str, accuracy: str) -> None:  # fmt: skip
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test"))
    y = d["train/fmri"].astype(np.float32)
    _check_finite("/train/fmri", y, data)
    n_vox = y.shape[1]
    device = select_device(training["device"])
    torch.manual_seed(seed)  # the initial weights
    enc = ImageEncoder(n_vox, settings["size"], settings["backbone"], settings["weights_dir"]).to(device)
    x_img = _float_images(stim.train.images)  # unique training images
    rows = torch.from_numpy(d["train/image_index"].astype(np.int64))
    y_t = torch.from_numpy(y)
    trainer = Trainer(
        name="pretrain_encoder", modules={"encoder": enc}, settings=settings["train"],
        training=training, checkpoint_dir=checkpoint, seed=seed, device=device,
        fingerprint=_fingerprint(settings, seed, data, images),
    )  # fmt: skip

    cached = None
    if settings["max_shift"] == 0:  # no augmentation: the frozen backbone runs once per image
        with torch.no_grad():
            chunks = [[f.cpu() for f in enc.backbone_features(x_img[s : s + 64].to(device))]
                      for s in range(0, len(x_img), 64)]  # fmt: skip
            cached = [torch.cat(c) for c in zip(*chunks)]

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
    pred = _batched(enc, _float_images(stim.test.images[d["test/image_index"]]), device).numpy()
    table = voxel_accuracy(pred, d["test/fmri"], d.groups["voxels"].get("noise_ceiling"))
    hp = {**enc.hparams, "weights_dir": settings["weights_dir"], "seed": seed,
          "median_r": table["median_r"], "median_r_normalised": table["median_r_normalised"]}  # fmt: skip
    save_model(model, {"encoder": enc}, hp)
    write_loss_log(losses, history)
    with atomic_path(accuracy) as tmp, open(tmp, "w") as fh:
        fh.write("voxel\tr\tnoise_ceiling\tr_normalised\n")
        for i, (r, nc, rn) in enumerate(zip(table["r"], table["ceiling"], table["r_normalised"])):
            fh.write(f"{i}\t{r:.6f}\t{nc:.6f}\t{rn:.6f}\n")
    log.info("encoder test prediction: median r %.3f, median r/ceiling %.3f",
             table["median_r"], table["median_r_normalised"])  # fmt: skip
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


# -- train_attention_decoder ------------------------------------------------------------------
def train_attention_decoder(data: str, images: str, maps: str, settings: dict, training: dict,
                            seed: int, checkpoint: str, model: str, losses: str,
                            summary: str) -> None:  # fmt: skip
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test"))
    x = torch.from_numpy(d["train/fmri"].astype(np.float32))
    _check_finite("/train/fmri", x.numpy(), data)
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
        settings=settings["train"], training=training, checkpoint_dir=checkpoint, seed=seed,
        device=device, fingerprint=_fingerprint(settings, seed, data, maps),
    )  # fmt: skip

    def step(idx, gen):
        pred = dec(x[idx].to(device))
        mse = (pred.float() - target[rows[idx]].to(device)).pow(2).mean()
        return {"loss": mse}

    history = trainer.fit(len(x), step)
    dec.eval()
    test_fmri = torch.from_numpy(d["test/fmri"].astype(np.float32))
    decoded = _batched(dec, test_fmri, device)[:, 0].numpy()
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
    write_loss_log(losses, history)
    write_json(summary, result)
    trainer.finish()


# -- train_decoder ----------------------------------------------------------------------------
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
                  settings: dict, training: dict, seed: int, checkpoint: str, model: str,
                  losses: str) -> None:  # fmt: skip
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test", "unpaired"))
    fmri = torch.from_numpy(d["train/fmri"].astype(np.float32))
    _check_finite("/train/fmri", fmri.numpy(), data)
    n_vox = fmri.shape[1]
    device = select_device(training["device"])
    enc = load_encoder(encoder, n_vox, device)
    torch.manual_seed(seed)  # the initial weights
    dec = _decoder(family, n_vox, settings).to(device)
    out = dec.base * 8
    percept = Backbone(enc.hparams["backbone"], out, read_hparams(encoder).get("weights_dir", "")).to(device)
    levels = LEVELS[enc.hparams["backbone"]]["perceptual"]
    rows = torch.from_numpy(d["train/image_index"].astype(np.int64))
    train_imgs = _float_images(stim.train.images, out)
    has_unpaired = stim.unpaired is not None and len(stim.unpaired.images) > 0
    unp_imgs = _float_images(stim.unpaired.images, out) if has_unpaired else torch.zeros(0, 3, out, out)
    feats = lambda x: percept(x, levels)  # noqa: E731

    def cached_feats(x):
        chunks = [[f.cpu() for f in feats(x[s : s + 64].to(device))] for s in range(0, len(x), 64)]
        return [torch.cat(c) for c in zip(*chunks)] if chunks else []

    with torch.no_grad():
        train_feats = cached_feats(train_imgs)
        unp_feats = cached_feats(unp_imgs) if has_unpaired else []
        # E is frozen during decoder training: its outputs on fixed images are cached
        enc_train = _batched(enc, _float_images(stim.train.images), device)
        enc_unp = _batched(enc, _float_images(stim.unpaired.images), device) if has_unpaired else None
    pick = lambda fs, i: [f[i].to(device) for f in fs]  # noqa: E731
    modules = {"decoder": dec}
    fp = _fingerprint({"family": family, **settings}, seed, data, images, encoder, attention)
    trainer = Trainer(name=f"train_decoder[{method}]", modules=modules, settings=settings["train"],
                      training=training, checkpoint_dir=checkpoint, fingerprint=fp, seed=seed,
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
            with torch.no_grad():
                fa_fmri = _batched(att, fmri, device)
                fa_enc_train = _batched(att, enc_train, device)
                fa_enc_unp = _batched(att, enc_unp, device) if has_unpaired else None
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
    write_loss_log(losses, history)
    trainer.finish()


# -- reconstruct ------------------------------------------------------------------------------
def reconstruct_decoder(method: str, family: str, data: str, images: str, decoder: str,
                        attention: str, training: dict, seed: int, output: str) -> None:  # fmt: skip
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("test",))
    x = torch.from_numpy(d["test/fmri"].astype(np.float32))
    _check_finite("/test/fmri", x.numpy(), data)
    hp = read_hparams(decoder)
    if hp["n_voxels"] != x.shape[1]:
        raise InputError(f"{decoder}: decoder expects {hp['n_voxels']} voxels, the fMRI has {x.shape[1]}")
    device = select_device(training["device"])
    if family == "ssl":
        dec = SSLDecoder(hp["n_voxels"], hp["size"])
    else:
        dec = GuidedDecoder(hp["n_voxels"], hp["size"], hp["lambda"], hp["mu"])
    load_into(decoder, {"decoder": dec})
    dec.to(device).eval()
    with torch.no_grad():
        if family != "ssl" and dec.uses_attention:
            att = load_attention_decoder(attention, hp["n_voxels"], device)
            fa = _batched(att, x, device)
            imgs = torch.cat([dec(x[s : s + 64].to(device), fa[s : s + 64].to(device)).cpu() for s in range(0, len(x), 64)])
        else:
            imgs = _batched(dec, x, device)
    size = stim.test.images.shape[1]
    if imgs.shape[-1] != size:
        imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", align_corners=False)
    recon = (imgs.clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).numpy()
    test_rows = d["test/image_index"]
    attrs = {"method": method, "family": family, "seed": seed,
             "transductive_test_fmri": int(bool(hp.get("used_test_fmri", False))),  # paper 002's D-E term
             **{k: v for k, v in d.attrs.items() if k in ("dataset", "subject", "roi")}}  # fmt: skip
    prepared.write_recon_file(output, recon, test_rows, stim.test.names[test_rows], attrs)
    log.info("wrote %s: %s", output, recon.shape)
