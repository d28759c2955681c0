"""Rules ``train_autoencoder``, ``pretrain_ldm`` (our label-to-image LDM), ``train_ldm`` (fMRI
conditioning, eq. 9) and ``reconstruct_cad`` (sampling) of paper 001.

Each function takes its stage's slice of one method's merged ``cad`` settings, the ``training``
block, input and output paths; every random draw of a step (noise, timesteps, condition dropout)
comes from the step's generator, so a resumed run is bit-exact.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data import prepared
from ...data.atomic import atomic_path
from ...errors import InputError
from ...models.mae import FmriMAE
from ...train.device import select_device
from ...train.files import load_into, read_hparams, save_model
from ...train.loop import step_seed
from ...train.progress import Progress
from ..common import SYMMETRIC, batched, fingerprint, to_uint8, write_reconstructions
from .mae import finish, fit, load_fmri_mae, load_images, subject_fmri

log = logging.getLogger(__name__)


# -- the label-to-image LDM (first stage, then class-conditional UNet) --------------------------
def train_autoencoder(images: str, settings: dict, training: dict, checkpoint_dir: str, seed: int,
                      model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Rule ``train_autoencoder``: AutoencoderKL (or VQModel) on the train + unpaired images,
    written as a diffusers folder ``model/vae`` (``model/vqvae``) with a latent scaling factor."""
    from ...models.ldm import FIRST_STAGE_FOLDERS, build_autoencoder

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

    fp = fingerprint("train_autoencoder", [settings["size"], settings["image_size"], kind, s], seed, [images],
                     training, device)  # fmt: skip
    trainer, history = fit("train_autoencoder", {"vae": vae}, s, training, checkpoint_dir, fp, seed, device,
                           len(x), step)  # fmt: skip
    vae.eval()
    vae.register_to_config(scaling_factor=1.0)
    z = _latents(vae, kind, x, device)
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    log.info("first stage %s: latents %s, scaling factor %.4f", kind, tuple(z.shape[1:]), vae.config.scaling_factor)
    with atomic_path(model) as tmp:
        vae.to("cpu").save_pretrained(Path(tmp) / FIRST_STAGE_FOLDERS[kind])
    finish(trainer, history, loss_log, train_summary, settings)


def _category_labels(images: str, splits) -> tuple[torch.Tensor, int]:
    """Category of every image of ``splits`` -> class ids 0..K-1 over the training categories
    (anything else, e.g. the unpaired images' -1, is the null class K)."""
    stim = prepared.read_images_file(images, splits=tuple(set(splits) | {"train", "test"}), with_images=False)
    classes = sorted(set(int(c) for c in stim.train.category if c >= 0))
    lookup = {c: i for i, c in enumerate(classes)}
    labels = [lookup.get(int(c), len(classes)) for sp in splits if getattr(stim, sp) is not None for c in getattr(stim, sp).category]
    return torch.tensor(labels, dtype=torch.long), len(classes)


def _latents(vae, kind, x: torch.Tensor, device) -> torch.Tensor:
    from ...models.ldm import encode_latents

    return batched(lambda u: encode_latents(vae, kind, u), x, device=device, batch=256, progress="encode latents")


def _diffusion_loss(unet, sched, z0, tokens, pooled, gen, device) -> torch.Tensor:
    """Eq. 8/9: || eps - eps_theta(sqrt(a_t) z0 + sqrt(1 - a_t) eps, t, c) ||^2."""
    noise = torch.randn(z0.shape, generator=gen).to(device)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(z0),), generator=gen).to(device)
    zt = sched.add_noise(z0, noise, t)
    labels = pooled if unet.config.class_embed_type == "projection" else None
    eps = unet(zt, t, encoder_hidden_states=tokens, class_labels=labels).sample
    return F.mse_loss(eps.float(), noise)


def pretrain_ldm(images: str, autoencoder: str, settings: dict, training: dict, checkpoint_dir: str,
                 seed: int, model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Rule ``pretrain_ldm``: a class-conditional UNet on the training categories (unpaired images
    as the null class), with condition dropout; writes a diffusers LDM folder."""
    from ...models.ldm import (FIRST_STAGE_FOLDERS, LabelConditioner, build_unet,
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

    fp = fingerprint("pretrain_ldm", [settings["size"], s], seed, [images, autoencoder], training, device)
    trainer, history = fit("pretrain_ldm", {"unet": unet, "cond": cond}, s, training, checkpoint_dir, fp, seed,
                           device, len(x), step)  # fmt: skip
    with atomic_path(model) as tmp:
        shutil.copytree(Path(autoencoder) / FIRST_STAGE_FOLDERS[kind], Path(tmp) / FIRST_STAGE_FOLDERS[kind])
        unet.to("cpu").save_pretrained(Path(tmp) / "unet")
        sched.save_pretrained(Path(tmp) / "scheduler")
        save_model(str(Path(tmp) / "label_conditioner.safetensors"), {"cond": cond.to("cpu")},
                   {"n_classes": n_classes, "settings": s})  # fmt: skip
    load_ldm_folder(model)  # the folder we hand on must read back like a user's
    finish(trainer, history, loss_log, train_summary, settings)


def load_ldm_folder_first_stage(folder: str) -> dict:
    from diffusers import AutoencoderKL, VQModel

    from ...models.ldm import FIRST_STAGE_FOLDERS

    for kind, sub in FIRST_STAGE_FOLDERS.items():
        if (Path(folder) / sub / "config.json").exists():
            vae = (AutoencoderKL if kind == "kl" else VQModel).from_pretrained(Path(folder) / sub)
            vae.eval().requires_grad_(False)
            return {"vae": vae, "kind": kind}
    raise InputError(f"{folder}: expected a first-stage folder vae/ or vqvae/ with config.json")


# -- fMRI-conditioned LDM -----------------------------------------------------------------------
def condition_widths(settings: dict) -> dict:
    """Cross-attention width, pooled width and number of condition tokens of the fMRI conditioner."""
    from ...models.ldm import CONDITION_TOKENS, UNET_SIZES

    size = {**UNET_SIZES[settings["size"]], "condition_tokens": CONDITION_TOKENS[settings["size"]]}
    s = settings["ldm"]
    return {k: int(s.get(k) or size[k]) for k in ("cross_attention_dim", "pooled_dim", "condition_tokens")}


def _fmri_conditioned(ldm_folder: str, mae: FmriMAE, widths: dict):
    """Load the LDM folder and build the fMRI conditioner; fail when the UNet's widths differ."""
    from ...models.ldm import FmriConditioner, check_unet_fits, load_ldm_folder

    ldm = load_ldm_folder(ldm_folder)
    check_unet_fits(ldm["unet"], widths["cross_attention_dim"], widths["pooled_dim"], f"{ldm_folder}/unet")
    return ldm, FmriConditioner(mae, widths["cross_attention_dim"], widths["pooled_dim"], widths["condition_tokens"])


def train_ldm(data: str, images: str, ldm_folder: str, fmri_encoder: str, settings: dict, training: dict,
              checkpoint_dir: str, seed: int, model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Rule ``train_ldm``: section 4.2.2 — fMRI tokens into cross-attention, the pooled token into
    the time embedding; only the fMRI conditioner (encoder + mappers) and the UNet's condition
    parameters (``attn2``, their ``norm2``, the time-embedding projection) are trained."""
    from ...models.ldm import freeze_for_fmri_tuning

    s = settings["ldm"]
    d = prepared.read_subject_file(data)
    v_all = subject_fmri(d["train/fmri"], read_hparams(fmri_encoder))  # bridged when pretrained on a pool
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

    fp = fingerprint("train_ldm", s, seed, [data, images, ldm_folder, fmri_encoder], training, device)
    trainer, history = fit("train_ldm", {"cond": cond, "unet": unet}, s, training, checkpoint_dir, fp, seed,
                           device, len(v_all), step, parameters=trainable)  # fmt: skip
    hp = {"stage": "fmri_ldm", "settings": s, "ldm_folder": str(ldm_folder), "fmri_encoder": read_hparams(fmri_encoder),
          **cond.widths, "image_size": side}  # fmt: skip
    save_model(model, {"cond": cond.to("cpu"), "unet": unet.to("cpu")}, hp)
    finish(trainer, history, loss_log, train_summary, settings)


def sample_seed(seed: int, image: int, sample: int) -> int:
    """The noise seed of one sample of one test image (independent of batching)."""
    return step_seed(seed, 0, salt=int(image) * 1009 + int(sample))


def reconstruct_cad(data: str, images: str, ldm_folder: str, model: str, settings: dict, training: dict,
                    seed: int, method: str, recon: str) -> None:  # fmt: skip
    """Rule ``reconstruct_cad``: ``sampling.samples`` images per test fMRI, each from its own fixed
    seed (so a sample does not depend on the batch), written with all samples to ``recon.h5``."""
    from ...models.ldm import decode_latents, sample, sampling_scheduler

    s = settings["sampling"]
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test"), with_images=False)
    hp = read_hparams(model)
    v_test = subject_fmri(d["test/fmri"], hp["fmri_encoder"])  # bridged when pretrained on a pool
    mae = FmriMAE.from_hparams(hp["fmri_encoder"])
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
        sched.set_timesteps(int(s["steps"]))  # only to count one batch's UNet calls (PLMS: steps + 1)
        per_batch = len(sched.timesteps)
        progress = Progress("reconstruct_cad", math.ceil(n * S / bs) * per_batch, per_epoch=per_batch,
                            epoch_word="batch", unit="UNet steps")  # fmt: skip
        for b, i in enumerate(range(0, n * S, bs)):
            share = min(bs, n * S - i) / per_batch  # images per UNet step, for images/s

            def on_step(k, b=b, share=share):
                progress.update(b * per_batch + k, None, share)

            z = sample(unet, sched, tokens[i : i + bs], pooled[i : i + bs], noise[i : i + bs].to(device),
                       int(s["steps"]), on_step=on_step)  # fmt: skip
            chunks.append(decode_latents(vae, kind, z).float().cpu())
        progress.done()
        x = torch.cat(chunks)
    wall = time.monotonic() - t0
    log.info("sampled %d images (%s, %d steps) in %.1f s: %.2f images/s", n * S, s["sampler"], s["steps"], wall, n * S / wall)
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="bicubic", align_corners=False)
    imgs = to_uint8(x, SYMMETRIC).reshape(n, S, out_size, out_size, 3)
    write_reconstructions(
        recon, imgs, d, stim.test.names, method=method, family="cad", seed=seed,
        transductive=bool(hp["fmri_encoder"].get("used_test_fmri", False)), sampler=s["sampler"],
        steps=int(s["steps"]), cad_size=settings["size"], cad_image_size=int(settings["image_size"]),
        **({"cad_pool": hp["fmri_encoder"]["pool"]} if hp["fmri_encoder"].get("pool") else {}),
    )  # fmt: skip
