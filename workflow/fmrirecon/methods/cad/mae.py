"""Rules ``pretrain_fmri_mae`` (phase 1, DC-MAE), ``pretrain_image_mae`` (the image MAE phase 2
starts from) and ``tune_cross_modal`` (phase 2) of paper 001.

Each function takes its stage's slice of one method's merged ``cad`` settings
(:func:`.settings.stage_settings`), the ``training`` block, input and output paths. Every random
draw of a step (masks, sparsification) comes from the step's generator, so a resumed run is
bit-exact.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from ...data import prepared
from ...errors import InputError
from ...losses_contrastive import double_contrastive
from ...models.mae import CrossModalFusion, FmriMAE, ImageMAE
from ...train.device import select_device
from ...train.files import read_hparams, save_model
from ...train.loop import Trainer
from ...train.records import write_loss_log, write_train_summary
from ..common import SYMMETRIC, fingerprint, load_image_tensors
from .settings import trainer_settings

log = logging.getLogger(__name__)

def fit(name, modules, stage, training, checkpoint_dir, fp, seed, device, n, step_fn, parameters=None):
    """Train through the shared :class:`Trainer` with a CAD stage block's optimiser settings."""
    trainer = Trainer(name=name, modules=modules, settings=trainer_settings(stage), training=training,
                      checkpoint_dir=checkpoint_dir, fingerprint=fp, seed=seed, device=device,
                      parameters=parameters)  # fmt: skip
    return trainer, trainer.fit(n, step_fn)


def finish(trainer, history, loss_log: str, train_summary: str, settings: dict) -> None:
    write_loss_log(loss_log, history)
    if train_summary:
        write_train_summary(train_summary, trainer, {"stage_settings": settings})
    trainer.finish()


def load_images(path: str, splits, size: int) -> dict[str, torch.Tensor]:
    """``images.h5`` splits as float (N, 3, size, size) in [-1, 1] (antialiased resize)."""
    return load_image_tensors(path, splits, size, SYMMETRIC)


def fmri_tensor(x: np.ndarray) -> torch.Tensor:
    """(N, V) voxels -> float32 tensor, each sample z-scored across its voxels. Test patterns are
    averages over repeats (smaller variance than single training trials); this puts both, and the
    unlabeled pool, on one scale."""
    t = torch.from_numpy(np.asarray(x, np.float32))
    return (t - t.mean(1, keepdim=True)) / t.std(1, keepdim=True).clamp(min=1e-6)


def load_fmri(data: str, splits=("unlabeled", "train")) -> np.ndarray:
    d = prepared.read_subject_file(data)
    parts = []
    for split in splits:
        if split in d.groups and "fmri" in d.groups[split]:
            parts.append(np.asarray(d[f"{split}/fmri"], np.float32))
        elif split != "unlabeled":
            raise InputError(f"{data}: expected /{split}/fmri")
    if "unlabeled" in splits and "unlabeled" not in d.groups:
        log.info("%s has no /unlabeled pool: DC-MAE pretrains on %s only", data, [s for s in splits if s != "unlabeled"])
    return np.concatenate(parts)


def _sparsify(v: torch.Tensor, frac: float, gen) -> torch.Tensor:
    """Random sparsification: zero ``frac`` of each sample's voxels."""
    if frac <= 0:
        return v
    keep = (torch.rand(v.shape, generator=gen) >= frac).to(v.device, v.dtype)
    return v * keep


def build_fmri_mae(settings: dict, n_voxels: int, decoder_depth: int = 0) -> FmriMAE:
    s = settings["fmri_mae"]
    return FmriMAE.from_size(settings["size"], n_voxels, patch_size=s["patch_size"],
                             decoder_depth=decoder_depth or s["decoder_depth"])  # fmt: skip


def load_fmri_mae(path: str, n_voxels: int | None = None, where: str = "") -> FmriMAE:
    model = FmriMAE.from_file(path)
    if n_voxels is not None:
        model.check_fits(n_voxels, where or path)
    return model


# -- phase 1: DC-MAE ----------------------------------------------------------------------------
def pretrain_fmri_mae(data: str, settings: dict, training: dict, checkpoint_dir: str, seed: int,
                      model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Rule ``pretrain_fmri_mae``: DC-MAE on the unlabeled pool + training fMRI of one subject x ROI.

    Test fMRI joins the pool only with ``cad.use_test_fmri_in_pretraining`` (transductive, off by
    default); the model's hyper-parameters record it.
    """
    s = settings["fmri_mae"]
    splits = ("unlabeled", "train") + (("test",) if settings["use_test_fmri_in_pretraining"] else ())
    if "test" in splits:
        log.warning("cad.use_test_fmri_in_pretraining is on: the test fMRI (without images) joins DC-MAE pretraining")
    x = fmri_tensor(load_fmri(data, splits))
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    mae = build_fmri_mae(settings, x.shape[1]).to(device)
    log.info("DC-MAE: %d samples x %d voxels -> %d patches of %d; %.2fM parameters", len(x), x.shape[1],
             mae.num_patches, mae.patch_size, sum(p.numel() for p in mae.parameters()) / 1e6)  # fmt: skip
    ratio, tau = float(s["mask_ratio"]), float(s["tau"])

    def step(idx, gen):
        v = x[idx].to(device)
        vs = _sparsify(v, float(s["sparsify"]), gen)
        h1, r1, m1 = mae.encode(vs, ratio, gen)
        h2, r2, m2 = mae.encode(vs, ratio, gen)
        d1, d2 = mae.decode(h1, r1), mae.decode(h2, r2)
        target = mae.pad(v)
        out = double_contrastive(d1, d2, target, tau, float(s["gamma_c"]), float(s["gamma_s"]))
        if s["gamma_rec"] > 0:
            rec = 0.5 * (F.mse_loss(d1, target) + F.mse_loss(d2, target))
            out["reconstruction"] = rec
            out["loss"] = out["loss"] + float(s["gamma_rec"]) * rec
        return out

    fp = fingerprint("pretrain_fmri_mae", [settings["size"], s, splits], seed, [data], training, device)
    trainer, history = fit("pretrain_fmri_mae", {"mae": mae}, s, training, checkpoint_dir, fp, seed,
                           device, len(x), step)  # fmt: skip
    hp = {**mae.hparams(), "stage": "dc_mae", "settings": s, "n_samples": len(x),
          "used_test_fmri": "test" in splits, "source": str(data)}  # fmt: skip
    save_model(model, {"mae": mae}, hp)
    finish(trainer, history, loss_log, train_summary, settings)


# -- the image MAE phase 2 starts from ----------------------------------------------------------
def pretrain_image_mae(images: str, settings: dict, training: dict, checkpoint_dir: str, seed: int,
                       model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Rule ``pretrain_image_mae``: a ViT MAE on the stimulus (train) and unpaired images."""
    s = settings["image_mae"]
    imgs = load_images(images, ("train", "unpaired"), settings["image_size"])
    x = torch.cat(list(imgs.values()))
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    depth = settings["cross_modal"]["decoder_depth"]
    mae = ImageMAE.from_size(settings["size"], settings["image_size"], decoder_depth=depth).to(device)
    ratio = float(s["mask_ratio"])

    def step(idx, gen):
        u = x[idx].to(device)
        h, restore, mask = mae.encode(u, ratio, gen)
        err = ((mae.decode(h, restore) - mae.patchify(u)) ** 2).mean(-1)
        return {"loss": (err * mask).sum() / mask.sum().clamp(min=1)}

    fp = fingerprint("pretrain_image_mae", [settings["size"], settings["image_size"], s, depth], seed, [images],
                     training, device)  # fmt: skip
    trainer, history = fit("pretrain_image_mae", {"mae": mae}, s, training, checkpoint_dir, fp, seed,
                           device, len(x), step)  # fmt: skip
    save_model(model, {"mae": mae}, {**mae.hparams(), "stage": "image_mae", "settings": s, "n_samples": len(x)})
    finish(trainer, history, loss_log, train_summary, settings)


# -- phase 2: cross-modal tuning ----------------------------------------------------------------
def tune_cross_modal(data: str, images: str, fmri_mae: str, image_mae: str, settings: dict, training: dict,
                     checkpoint_dir: str, seed: int, model: str, loss_log: str,
                     train_summary: str = "") -> None:  # fmt: skip
    """Rule ``tune_cross_modal``: eq. 7 on the training pairs; only the fMRI MAE is written."""
    s = settings["cross_modal"]
    d = prepared.read_subject_file(data)
    v_all = fmri_tensor(d["train/fmri"])
    rows = torch.from_numpy(np.asarray(d["train/image_index"], np.int64))
    u_all = load_images(images, ("train",), settings["image_size"])["train"]
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    fmri = load_fmri_mae(fmri_mae, v_all.shape[1], where=f"{data} (phase-1 model {fmri_mae})")
    depth = int(s["decoder_depth"])
    if depth and depth != len(fmri.decoder_blocks):
        log.info("cross_modal.decoder_depth %d != phase-1 decoder depth %d: new fMRI decoder", depth, len(fmri.decoder_blocks))
        fresh = FmriMAE(**{**fmri.hparams(), "decoder_depth": depth})
        fresh.load_state_dict({k: v for k, v in fmri.state_dict().items() if not k.startswith("decoder")}, strict=False)
        fmri = fresh
    img = ImageMAE.from_file(image_mae)
    fusion = CrossModalFusion(fmri.embed_dim, img.embed_dim)
    for m in (fmri, img, fusion):
        m.to(device)
    for p in img.decoder_parameters():  # the image decoder stays frozen (section 4.2.1)
        p.requires_grad_(False)
    ratio_f, ratio_i = float(s["fmri_mask_ratio"]), float(s["image_mask_ratio"])
    gamma_f, gamma_i = float(s["gamma_f"]), float(s["gamma_i"])
    sparsify = float(settings["fmri_mae"]["sparsify"])

    def step(idx, gen):
        v = v_all[idx].to(device)
        u = u_all[rows[idx]].to(device)
        h_f, r_f, _ = fmri.encode(_sparsify(v, sparsify, gen), ratio_f, gen)
        h_i, r_i, _ = img.encode(u, ratio_i, gen)
        f_f, f_i = fusion(h_f, h_i)
        loss_f = F.mse_loss(fmri.decode(f_f, r_f), fmri.pad(v))
        loss_i = F.mse_loss(img.decode(f_i, r_i), img.patchify(u))
        return {"loss": gamma_f * loss_f + gamma_i * loss_i, "fmri_reconstruction": loss_f, "image_reconstruction": loss_i}

    modules = {"fmri": fmri, "image": img, "fusion": fusion}
    fp = fingerprint("tune_cross_modal", [s, sparsify], seed, [data, images, fmri_mae, image_mae], training, device)
    trainer, history = fit("tune_cross_modal", modules, s, training, checkpoint_dir, fp, seed, device,
                           len(v_all), step)  # fmt: skip
    hp = {**fmri.hparams(), "stage": "cross_modal", "settings": s, "n_samples": len(v_all),
          "used_test_fmri": bool(read_hparams(fmri_mae).get("used_test_fmri", False))}  # fmt: skip
    save_model(model, {"mae": fmri}, hp)
    finish(trainer, history, loss_log, train_summary, settings)


