"""Paper 001 (CAD, Sun et al. NeurIPS 2023) as the steps of the DAG, one function per rule.

=====================  ====================================================================
rule                   what it trains / writes
=====================  ====================================================================
pretrain_fmri_mae      phase 1, DC-MAE on the unlabeled pool + training fMRI (eqs. 1-3)
pretrain_image_mae     the image MAE phase 2 starts from (the paper uses He et al.'s release)
tune_cross_modal       phase 2, both MAEs fused by cross-attention, image decoder frozen (eq. 7)
train_autoencoder      first stage (AutoencoderKL / VQModel) on stimulus + unpaired images
pretrain_ldm           class-conditional UNet on the image categories: our label-to-image LDM
train_ldm              fMRI conditioning: cross-attention (attn2) + fMRI encoder trained (eq. 9)
reconstruct_cad        PLMS (or DDIM) sampling, several samples per test fMRI -> recon.h5
=====================  ====================================================================

Each function takes the merged ``cad`` settings of its method (``config.cad`` + the method's
``overrides``), the ``training`` block, input and output paths. All training goes through
:class:`fmrirecon.train.loop.Trainer`; every random draw of a step (masks, sparsification, noise,
timesteps, condition dropout) comes from the step's generator, so a resumed run is bit-exact.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import config_hash
from .data import prepared
from .data.atomic import atomic_path
from .errors import InputError
from .losses_contrastive import double_contrastive
from .models.mae import CrossModalFusion, FmriMAE, ImageMAE
from .train.device import select_device
from .train.files import load_into, read_hparams, save_model
from .train.loop import Trainer, write_loss_log

log = logging.getLogger(__name__)


# -- shared helpers -----------------------------------------------------------------------------
def trainer_settings(stage: dict) -> dict:
    """A stage block of the config -> the Trainer's settings (AdamW, cosine with warm-up)."""
    return {
        "epochs": int(stage["epochs"]), "batch_size": int(stage["batch_size"]), "lr": float(stage["lr"]),
        "lr_min": 0.01 * float(stage["lr"]), "schedule": "cosine", "cycles": 1,
        "warmup_fraction": float(stage["warmup_fraction"]), "weight_decay": float(stage["weight_decay"]),
        "optimizer": "adamw", "grad_clip": 1.0,
    }  # fmt: skip


def _digest(path: str | os.PathLike) -> str:
    """Size + mtime of a file, or of every file in a folder (cheap identity for fingerprints)."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return config_hash([(str(f.relative_to(p)) if p.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])


def fingerprint(*parts, inputs=()) -> str:
    return config_hash(list(parts), [_digest(p) for p in inputs])


def _fit(name, modules, stage, training, checkpoint_dir, fp, seed, device, n, step_fn, parameters=None):
    trainer = Trainer(name=name, modules=modules, settings=trainer_settings(stage), training=training,
                      checkpoint_dir=checkpoint_dir, fingerprint=fp, seed=seed, device=device,
                      parameters=parameters)  # fmt: skip
    t0 = time.monotonic()
    history = trainer.fit(n, step_fn)
    steps = trainer.step
    wall = time.monotonic() - t0
    log.info("%s: %d steps in %.1f s (%.2f steps/s this run)", name, steps, wall, steps / max(wall, 1e-9))
    return trainer, history


def _finish(trainer, history, loss_log: str) -> None:
    write_loss_log(loss_log, history)
    trainer.finish()


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


def load_images(path: str, splits, size: int) -> dict[str, torch.Tensor]:
    """``images.h5`` splits -> float (N, 3, size, size) in [-1, 1] (antialiased resize)."""
    stim = prepared.read_images_file(path, splits=tuple(set(splits) | {"train", "test"}))
    out = {}
    for split in splits:
        part = getattr(stim, split)
        if part is None or not len(part):
            continue
        x = torch.from_numpy(part.images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[split] = x.clamp(-1, 1)
    return out


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


_MAE_KEYS = ("n_voxels", "patch_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
             "decoder_num_heads")  # fmt: skip


def load_fmri_mae(path: str, n_voxels: int | None = None, where: str = "") -> FmriMAE:
    hp = read_hparams(path)
    model = FmriMAE(**{k: hp[k] for k in _MAE_KEYS})
    load_into(path, {"mae": model})
    if n_voxels is not None:
        model.check_fits(n_voxels, where or path)
    return model


# -- phase 1: DC-MAE ----------------------------------------------------------------------------
def pretrain_fmri_mae(data: str, settings: dict, training: dict, checkpoint_dir: str, seed: int,
                      output: str, loss_log: str) -> None:  # fmt: skip
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
    model = build_fmri_mae(settings, x.shape[1]).to(device)
    log.info("DC-MAE: %d samples x %d voxels -> %d patches of %d; %.2fM parameters", len(x), x.shape[1],
             model.num_patches, model.patch_size, sum(p.numel() for p in model.parameters()) / 1e6)  # fmt: skip
    ratio, tau = float(s["mask_ratio"]), float(s["tau"])

    def step(idx, gen):
        v = x[idx].to(device)
        vs = _sparsify(v, float(s["sparsify"]), gen)
        h1, r1, m1 = model.encode(vs, ratio, gen)
        h2, r2, m2 = model.encode(vs, ratio, gen)
        d1, d2 = model.decode(h1, r1), model.decode(h2, r2)
        target = model.pad(v)
        out = double_contrastive(d1, d2, target, tau, float(s["gamma_c"]), float(s["gamma_s"]))
        if s["gamma_rec"] > 0:
            rec = 0.5 * (F.mse_loss(d1, target) + F.mse_loss(d2, target))
            out["reconstruction"] = rec
            out["loss"] = out["loss"] + float(s["gamma_rec"]) * rec
        return out

    fp = fingerprint("pretrain_fmri_mae", settings["size"], s, splits, seed, inputs=[data])
    trainer, history = _fit("pretrain_fmri_mae", {"mae": model}, s, training, checkpoint_dir, fp, seed,
                            device, len(x), step)  # fmt: skip
    hp = {**model.hparams(), "stage": "dc_mae", "settings": s, "n_samples": len(x),
          "used_test_fmri": "test" in splits, "source": str(data)}  # fmt: skip
    save_model(output, {"mae": model}, hp)
    _finish(trainer, history, loss_log)


# -- the image MAE phase 2 starts from ----------------------------------------------------------
def pretrain_image_mae(images: str, settings: dict, training: dict, checkpoint_dir: str, seed: int,
                       output: str, loss_log: str) -> None:  # fmt: skip
    """Rule ``pretrain_image_mae``: a ViT MAE on the stimulus (train) and unpaired images."""
    s = settings["image_mae"]
    imgs = load_images(images, ("train", "unpaired"), settings["image_size"])
    x = torch.cat(list(imgs.values()))
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    depth = settings["cross_modal"]["decoder_depth"]
    model = ImageMAE.from_size(settings["size"], settings["image_size"], decoder_depth=depth).to(device)
    ratio = float(s["mask_ratio"])

    def step(idx, gen):
        u = x[idx].to(device)
        h, restore, mask = model.encode(u, ratio, gen)
        err = ((model.decode(h, restore) - model.patchify(u)) ** 2).mean(-1)
        return {"loss": (err * mask).sum() / mask.sum().clamp(min=1)}

    fp = fingerprint("pretrain_image_mae", settings["size"], settings["image_size"], s, depth, seed, inputs=[images])
    trainer, history = _fit("pretrain_image_mae", {"mae": model}, s, training, checkpoint_dir, fp, seed,
                            device, len(x), step)  # fmt: skip
    save_model(output, {"mae": model}, {**model.hparams(), "stage": "image_mae", "settings": s, "n_samples": len(x)})
    _finish(trainer, history, loss_log)


# -- phase 2: cross-modal tuning ----------------------------------------------------------------
def tune_cross_modal(data: str, images: str, fmri_mae: str, image_mae: str, settings: dict, training: dict,
                     checkpoint_dir: str, seed: int, output: str, loss_log: str) -> None:  # fmt: skip
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
    ihp = read_hparams(image_mae)
    img = ImageMAE(**{k: ihp[k] for k in ("image_size", "patch_size", "embed_dim", "depth", "num_heads",
                                           "decoder_embed_dim", "decoder_depth", "decoder_num_heads")})  # fmt: skip
    load_into(image_mae, {"mae": img})
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
    fp = fingerprint("tune_cross_modal", s, sparsify, seed, inputs=[data, images, fmri_mae, image_mae])
    trainer, history = _fit("tune_cross_modal", modules, s, training, checkpoint_dir, fp, seed, device,
                            len(v_all), step)  # fmt: skip
    hp = {**fmri.hparams(), "stage": "cross_modal", "settings": s, "n_samples": len(v_all),
          "used_test_fmri": bool(read_hparams(fmri_mae).get("used_test_fmri", False))}  # fmt: skip
    save_model(output, {"mae": fmri}, hp)
    _finish(trainer, history, loss_log)


# -- the label-to-image LDM (first stage, then class-conditional UNet) --------------------------
def train_autoencoder(images: str, settings: dict, training: dict, checkpoint_dir: str, seed: int,
                      output: str, loss_log: str) -> None:  # fmt: skip
    """Rule ``train_autoencoder``: AutoencoderKL (or VQModel) on the train + unpaired images,
    written as a diffusers folder ``output/vae`` (``output/vqvae``) with a latent scaling factor."""
    from .models.ldm import FIRST_STAGE_FOLDERS, build_autoencoder, encode_latents

    s, kind = settings["autoencoder"], settings["first_stage"]
    x = torch.cat(list(load_images(images, ("train", "unpaired"), settings["image_size"]).values()))
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    vae = build_autoencoder(kind, settings["size"]).to(device)

    def step(idx, gen):
        u = x[idx].to(device)
        if kind == "kl":
            post = vae.encode(u).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
            rec = vae.decode(z).sample
            reg = post.kl().mean() / z[0].numel()
        else:
            rec_out = vae.decode(vae.encode(u).latents, return_dict=True)
            rec, reg = rec_out.sample, rec_out.commit_loss.mean()
        l1 = (rec - u).abs().mean()
        mse = F.mse_loss(rec, u)
        return {"loss": l1 + mse + float(s["kl_weight"]) * reg, "l1": l1, "mse": mse, "regulariser": reg}

    fp = fingerprint("train_autoencoder", settings["size"], settings["image_size"], kind, s, seed, inputs=[images])
    trainer, history = _fit("train_autoencoder", {"vae": vae}, s, training, checkpoint_dir, fp, seed, device,
                            len(x), step)  # fmt: skip
    vae.eval()
    with torch.no_grad():
        vae.register_to_config(scaling_factor=1.0)
        z = torch.cat([encode_latents(vae, kind, x[i : i + 256].to(device)).cpu() for i in range(0, len(x), 256)])
        vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    log.info("first stage %s: latents %s, scaling factor %.4f", kind, tuple(z.shape[1:]), vae.config.scaling_factor)
    with atomic_path(output) as tmp:
        vae.to("cpu").save_pretrained(Path(tmp) / FIRST_STAGE_FOLDERS[kind])
    _finish(trainer, history, loss_log)


def _category_labels(images: str, splits) -> tuple[torch.Tensor, int]:
    """Category of every image of ``splits`` -> class ids 0..K-1 over the training categories
    (anything else, e.g. the unpaired images' -1, is the null class K)."""
    stim = prepared.read_images_file(images, splits=tuple(set(splits) | {"train", "test"}), with_images=False)
    classes = sorted(set(int(c) for c in stim.train.category if c >= 0))
    lookup = {c: i for i, c in enumerate(classes)}
    labels = [lookup.get(int(c), len(classes)) for sp in splits if getattr(stim, sp) is not None for c in getattr(stim, sp).category]
    return torch.tensor(labels, dtype=torch.long), len(classes)


def _latents(vae, kind, x: torch.Tensor, device) -> torch.Tensor:
    from .models.ldm import encode_latents

    with torch.no_grad():
        return torch.cat([encode_latents(vae, kind, x[i : i + 256].to(device)).cpu() for i in range(0, len(x), 256)])


def _diffusion_loss(unet, sched, z0, tokens, pooled, gen, device) -> torch.Tensor:
    """Eq. 8/9: || eps - eps_theta(sqrt(a_t) z0 + sqrt(1 - a_t) eps, t, c) ||^2."""
    noise = torch.randn(z0.shape, generator=gen).to(device)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(z0),), generator=gen).to(device)
    zt = sched.add_noise(z0, noise, t)
    labels = pooled if unet.config.class_embed_type == "projection" else None
    eps = unet(zt, t, encoder_hidden_states=tokens, class_labels=labels).sample
    return F.mse_loss(eps.float(), noise)


def pretrain_ldm(images: str, autoencoder: str, settings: dict, training: dict, checkpoint_dir: str,
                 seed: int, output: str, loss_log: str) -> None:  # fmt: skip
    """Rule ``pretrain_ldm``: a class-conditional UNet on the training categories (unpaired images
    as the null class), with condition dropout; writes a diffusers LDM folder."""
    from .models.ldm import (FIRST_STAGE_FOLDERS, LabelConditioner, build_unet,
                             downsample_factor, load_ldm_folder, train_scheduler)  # fmt: skip

    s = settings["ldm_pretrain"]
    first = load_ldm_folder_first_stage(autoencoder)
    vae, kind = first["vae"], first["kind"]
    splits = ("train", "unpaired")
    x = torch.cat(list(load_images(images, splits, settings["image_size"]).values()))
    labels, n_classes = _category_labels(images, splits)
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    vae.to(device)
    z_all = _latents(vae, kind, x, device)
    widths = condition_widths(settings)
    cross, pooled_dim = widths["cross_attention_dim"], widths["pooled_dim"]
    unet = build_unet(settings["size"], settings["image_size"] // downsample_factor(vae), z_all.shape[1],
                      cross_attention_dim=cross, pooled_dim=pooled_dim).to(device)  # fmt: skip
    cond = LabelConditioner(n_classes, cross, pooled_dim).to(device)
    sched = train_scheduler()
    log.info("label-to-image LDM: %d images, %d classes, latents %s, UNet %.2fM parameters", len(x), n_classes,
             tuple(z_all.shape[1:]), sum(p.numel() for p in unet.parameters()) / 1e6)  # fmt: skip

    def step(idx, gen):
        lab = labels[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < float(s["cond_dropout"])
        lab[drop] = n_classes
        tokens, pooled = cond(lab.to(device))
        return {"loss": _diffusion_loss(unet, sched, z_all[idx].to(device), tokens, pooled, gen, device)}

    fp = fingerprint("pretrain_ldm", settings["size"], s, seed, inputs=[images, autoencoder])
    trainer, history = _fit("pretrain_ldm", {"unet": unet, "cond": cond}, s, training, checkpoint_dir, fp, seed,
                            device, len(x), step)  # fmt: skip
    with atomic_path(output) as tmp:
        shutil.copytree(Path(autoencoder) / FIRST_STAGE_FOLDERS[kind], Path(tmp) / FIRST_STAGE_FOLDERS[kind])
        unet.to("cpu").save_pretrained(Path(tmp) / "unet")
        sched.save_pretrained(Path(tmp) / "scheduler")
        save_model(str(Path(tmp) / "label_conditioner.safetensors"), {"cond": cond.to("cpu")},
                   {"n_classes": n_classes, "settings": s})  # fmt: skip
    load_ldm_folder(output)  # the folder we hand on must read back like a user's
    _finish(trainer, history, loss_log)


def load_ldm_folder_first_stage(folder: str) -> dict:
    from diffusers import AutoencoderKL, VQModel

    from .models.ldm import FIRST_STAGE_FOLDERS

    for kind, sub in FIRST_STAGE_FOLDERS.items():
        if (Path(folder) / sub / "config.json").exists():
            vae = (AutoencoderKL if kind == "kl" else VQModel).from_pretrained(Path(folder) / sub)
            vae.eval().requires_grad_(False)
            return {"vae": vae, "kind": kind}
    raise InputError(f"{folder}: expected a first-stage folder vae/ or vqvae/ with config.json")


# -- fMRI-conditioned LDM -----------------------------------------------------------------------
def condition_widths(settings: dict) -> dict:
    """Cross-attention width, pooled width and number of condition tokens of the fMRI conditioner."""
    from .models.ldm import CONDITION_TOKENS, UNET_SIZES

    size = {**UNET_SIZES[settings["size"]], "condition_tokens": CONDITION_TOKENS[settings["size"]]}
    s = settings["ldm"]
    return {k: int(s.get(k) or size[k]) for k in ("cross_attention_dim", "pooled_dim", "condition_tokens")}


def _fmri_conditioned(ldm_folder: str, mae: FmriMAE, widths: dict):
    """Load the LDM folder and build the fMRI conditioner; fail when the UNet's widths differ."""
    from .models.ldm import FmriConditioner, check_unet_fits, load_ldm_folder

    ldm = load_ldm_folder(ldm_folder)
    check_unet_fits(ldm["unet"], widths["cross_attention_dim"], widths["pooled_dim"], f"{ldm_folder}/unet")
    return ldm, FmriConditioner(mae, widths["cross_attention_dim"], widths["pooled_dim"], widths["condition_tokens"])


def train_ldm(data: str, images: str, ldm_folder: str, fmri_encoder: str, settings: dict, training: dict,
              checkpoint_dir: str, seed: int, output: str, loss_log: str) -> None:  # fmt: skip
    """Rule ``train_ldm``: section 4.2.2 — fMRI tokens into cross-attention, the pooled token into
    the time embedding; only the fMRI conditioner (encoder + mappers) and the UNet's condition
    parameters (``attn2``, their ``norm2``, the time-embedding projection) are trained."""
    from .models.ldm import freeze_for_fmri_tuning

    s = settings["ldm"]
    d = prepared.read_subject_file(data)
    v_all = fmri_tensor(d["train/fmri"])
    rows = torch.from_numpy(np.asarray(d["train/image_index"], np.int64))
    torch.manual_seed(seed)  # the conditioner's new projections
    mae = load_fmri_mae(fmri_encoder, v_all.shape[1], where=f"{data} (fMRI encoder {fmri_encoder})")
    ldm, cond = _fmri_conditioned(ldm_folder, mae, condition_widths(settings))
    unet, vae, kind, sched = ldm["unet"], ldm["vae"], ldm["kind"], ldm["scheduler"]
    if unet.config.class_embed_type != "projection":
        log.info("%s/unet has no class-embedding projection: fMRI conditions through cross-attention only", ldm_folder)
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    vae.to(device).requires_grad_(False)
    side = unet.config.sample_size * (2 ** (len(vae.config.block_out_channels) - 1))
    u_train = load_images(images, ("train",), side)["train"]
    z_train = _latents(vae, kind, u_train, device)
    unet.to(device)
    cond.to(device)
    trainable = freeze_for_fmri_tuning(unet) + list(cond.parameters())
    log.info("train_ldm: %d pairs; trainable %.2fM (UNet attn2, norm2, condition projection + fMRI conditioner) "
             "of %.2fM", len(v_all),
             sum(p.numel() for p in trainable) / 1e6,
             (sum(p.numel() for p in unet.parameters()) + sum(p.numel() for p in cond.parameters())) / 1e6)  # fmt: skip

    def step(idx, gen):
        tokens, pooled = cond(v_all[idx].to(device))
        return {"loss": _diffusion_loss(unet, sched, z_train[rows[idx]].to(device), tokens, pooled, gen, device)}

    fp = fingerprint("train_ldm", s, seed, inputs=[data, images, ldm_folder, fmri_encoder])
    trainer, history = _fit("train_ldm", {"cond": cond, "unet": unet}, s, training, checkpoint_dir, fp, seed,
                            device, len(v_all), step, parameters=trainable)  # fmt: skip
    hp = {"stage": "fmri_ldm", "settings": s, "ldm_folder": str(ldm_folder), "fmri_encoder": read_hparams(fmri_encoder),
          **cond.widths, "image_size": side}  # fmt: skip
    save_model(output, {"cond": cond.to("cpu"), "unet": unet.to("cpu")}, hp)
    _finish(trainer, history, loss_log)


def sample_seed(seed: int, image: int, sample: int) -> int:
    return (int(seed) * 1_000_003 + int(image) * 1009 + int(sample)) % (2**63 - 1)


def reconstruct_cad(data: str, images: str, ldm_folder: str, model: str, settings: dict, training: dict,
                    seed: int, method: str, output: str) -> None:  # fmt: skip
    """Rule ``reconstruct_cad``: ``sampling.samples`` images per test fMRI, each from its own fixed
    seed (so a sample does not depend on the batch), written with all samples to ``recon.h5``."""
    from .models.ldm import decode_latents, sample, sampling_scheduler

    s = settings["sampling"]
    d = prepared.read_subject_file(data)
    v_test = fmri_tensor(d["test/fmri"])
    test_rows = d["test/image_index"]
    stim = prepared.read_images_file(images, splits=("train", "test"), with_images=False)
    hp = read_hparams(model)
    mae = FmriMAE(**{k: hp["fmri_encoder"][k] for k in _MAE_KEYS})
    mae.check_fits(v_test.shape[1], f"{data} (model {model})")
    ldm, cond = _fmri_conditioned(ldm_folder, mae, {k: hp[k] for k in ("cross_attention_dim", "pooled_dim", "condition_tokens")})
    unet, vae, kind = ldm["unet"], ldm["vae"], ldm["kind"]
    load_into(model, {"cond": cond, "unet": unet})
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    for m in (unet, vae, cond):
        m.to(device).eval()
    sched = sampling_scheduler(ldm["scheduler"], s["sampler"])
    n, S = len(v_test), int(s["samples"])
    c = unet.config.in_channels
    side = unet.config.sample_size
    noise = torch.stack([torch.randn(c, side, side, generator=torch.Generator().manual_seed(sample_seed(seed, i, k)))
                         for i in range(n) for k in range(S)])  # fmt: skip
    out_size = int(prepared.read_images_file(images, splits=("train", "test")).test.images.shape[1])
    t0 = time.monotonic()
    with torch.no_grad():
        tokens, pooled = cond(v_test.to(device))
        tokens, pooled = tokens.repeat_interleave(S, 0), pooled.repeat_interleave(S, 0)
        chunks = []
        bs = int(s["batch_size"])
        for i in range(0, n * S, bs):
            z = sample(unet, sched, tokens[i : i + bs], pooled[i : i + bs], noise[i : i + bs].to(device), int(s["steps"]))
            chunks.append(decode_latents(vae, kind, z).float().cpu())
        x = torch.cat(chunks)
    wall = time.monotonic() - t0
    log.info("sampled %d images (%s, %d steps) in %.1f s: %.2f images/s", n * S, s["sampler"], s["steps"], wall, n * S / wall)
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="bicubic", align_corners=False)
    imgs = ((x.clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    imgs = imgs.reshape(n, S, out_size, out_size, 3)
    transductive = bool(hp["fmri_encoder"].get("used_test_fmri", False))
    attrs = {"method": method, "family": "cad", "seed": seed, "sampler": s["sampler"], "steps": int(s["steps"]),
             "transductive_test_fmri": int(transductive), "cad_size": settings["size"],
             "cad_image_size": int(settings["image_size"]), "sampling_images_per_s": round(n * S / wall, 3),
             **{k: v for k, v in d.attrs.items() if k in ("dataset", "subject", "roi")}}  # fmt: skip
    prepared.write_recon_file(output, imgs, test_rows, stim.test.names[test_rows], attrs)
    log.info("wrote %s: %s%s", output, imgs.shape, " (TRANSDUCTIVE: test fMRI used in pretraining)" if transductive else "")

