"""Rules ``train_text_ldm`` (the frozen generator's stand-in) and ``reconstruct_latentreg``
(img2img from the predicted ``z``, guided by the predicted ``c``) of paper 003.

Paper 003 runs Stable Diffusion v1.4 frozen: the VAE's latent of a 320-px image (4x40x40) is the
regression target ``z``, CLIP's text tokens the target ``c``, and generation is img2img from ``z``
(DDIM, 50 steps, strength 0.8) with classifier-free guidance 5 on ``c``, 5 samples per pattern.
No Stable Diffusion can be had offline, so the generator here is our own: CAD's first stage
(rule ``train_autoencoder``) and a UNet with cross-attention to the caption tokens trained on the
training and unpaired images of the dataset (never test images), with the caption dropped to the
empty caption's tokens at ``cond_dropout`` (and always for images without captions) so that
guidance has an unconditional branch. It is frozen before any fMRI is seen.
"""

from __future__ import annotations

import json
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
from ...train.device import select_device
from ...train.loop import step_seed
from ...train.progress import Progress
from ..cad.ldm import _diffusion_loss, _latents, load_ldm_folder_first_stage
from ..cad.mae import finish, fit, load_images
from ..common import SYMMETRIC, fingerprint, to_uint8, write_reconstructions
from .text import read_null, read_tokens

log = logging.getLogger(__name__)

GENERATOR_SUBSTITUTION = ("our text-conditioned LDM (CAD's first stage + a UNet with cross-attention to the caption "
                          "tokens, trained on training and unpaired images) replaces Stable Diffusion v1.4")  # fmt: skip


def _caption_tokens(text: str, images: str, splits) -> torch.Tensor:
    """Tokens of every image of ``splits`` in images.h5 order; the empty caption's where a split
    has no captions (unpaired images then train the unconditional branch only)."""
    null = read_null(text)
    stim = prepared.read_images_file(images, splits=tuple(set(splits) | {"train", "test"}), with_images=False)
    out = []
    with prepared.open_h5(text) as f:
        have = {s for s in splits if f"{s}/tokens" in f}
    for split in splits:
        part = getattr(stim, split)
        if part is None:
            continue
        if split in have:
            tok = read_tokens(text, split)
            if len(tok) != len(part.names):
                raise InputError(f"{text}: /{split}/tokens has {len(tok)} rows, {images} /{split} {len(part.names)} images")
        else:
            tok = np.broadcast_to(null, (len(part.names), *null.shape))
        out.append(torch.from_numpy(np.ascontiguousarray(tok, np.float32)))
    return torch.cat(out)


def train_text_ldm(images: str, autoencoder: str, text: str, settings: dict, training: dict, checkpoint_dir: str,
                   seed: int, model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Rule ``train_text_ldm``: a caption-conditioned UNet (cross-attention only, no pooled
    condition, as Stable Diffusion's) on the first stage's latents of the training and unpaired
    images; writes a diffusers LDM folder (``vae/``, ``unet/``, ``scheduler/``) plus ``text.json``."""
    from ...models.ldm import FIRST_STAGE_FOLDERS, build_unet, downsample_factor, load_ldm_folder, train_scheduler

    s = settings["ldm"]
    first = load_ldm_folder_first_stage(autoencoder)
    vae, kind = first["vae"], first["kind"]
    splits = [sp for sp in ("train", "unpaired")]
    loaded = load_images(images, splits, settings["image_size"])
    x = torch.cat([loaded[sp] for sp in splits if sp in loaded])
    tokens = _caption_tokens(text, images, [sp for sp in splits if sp in loaded])
    if len(tokens) != len(x):
        raise InputError(f"{text}: {len(tokens)} caption rows for {len(x)} training and unpaired images")
    null = torch.from_numpy(read_null(text))
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    vae.to(device)
    z_all = _latents(vae, kind, x, device)
    unet = build_unet(settings["size"], settings["image_size"] // downsample_factor(vae), z_all.shape[1],
                      cross_attention_dim=tokens.shape[-1], pooled=False).to(device)  # fmt: skip
    sched = train_scheduler()
    log.info("text-to-image LDM: %d images, tokens %s, latents %s, UNet %.2fM parameters", len(x),
             tuple(tokens.shape[1:]), tuple(z_all.shape[1:]), sum(p.numel() for p in unet.parameters()) / 1e6)  # fmt: skip

    def step(idx, gen):
        tok = tokens[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < float(s["cond_dropout"])
        tok[drop] = null
        return {"loss": _diffusion_loss(unet, sched, z_all[idx].to(device), tok.to(device), None, gen, device)}

    fp = fingerprint("train_text_ldm", [settings["size"], settings["image_size"], s], seed, [images, autoencoder, text],
                     training, device)  # fmt: skip
    trainer, history = fit("train_text_ldm", {"unet": unet}, s, training, checkpoint_dir, fp, seed, device, len(x), step)
    with prepared.open_h5(text) as f:
        text_attrs = {k: str(v) for k, v in f.attrs.items()}
    with atomic_path(model) as tmp:
        shutil.copytree(Path(autoencoder) / FIRST_STAGE_FOLDERS[kind], Path(tmp) / FIRST_STAGE_FOLDERS[kind])
        unet.to("cpu").save_pretrained(Path(tmp) / "unet")
        sched.save_pretrained(Path(tmp) / "scheduler")
        (Path(tmp) / "text.json").write_text(json.dumps({**text_attrs, "generator": GENERATOR_SUBSTITUTION,
                                                         "trained_on": splits}, indent=1, sort_keys=True))  # fmt: skip
    load_ldm_folder(model)  # the folder must read back like a user's
    finish(trainer, history, loss_log, train_summary, settings)


def first_stage_latents(folder: str, images: str, splits, size: int, device=None) -> dict[str, torch.Tensor]:
    """The first stage's scaled latents ``z`` (posterior means) of images.h5 ``splits`` at ``size``
    px; ``folder`` is a first-stage folder or an LDM folder (both have ``vae/`` or ``vqvae/``)."""
    first = load_ldm_folder_first_stage(folder)
    vae, kind = first["vae"], first["kind"]
    device = device or torch.device("cpu")
    vae.to(device)
    return {sp: _latents(vae, kind, x, device).cpu() for sp, x in load_images(images, splits, size).items()}


def sample_seed(seed: int, image: int, sample: int) -> int:
    """The noise seed of one sample of one test image (independent of batching)."""
    return step_seed(seed, 0, salt=int(image) * 1009 + int(sample) + 7)


def reconstruct_latentreg(data: str, images: str, ldm_folder: str, text: str, predictions: dict, settings: dict,
                          training: dict, seed: int, method: str, recon: str) -> None:  # fmt: skip
    """Rule ``reconstruct_latentreg``: ``samples`` img2img samples per test fMRI (module doc) from
    ``predictions`` ``{"z": file, "c": file}`` of rule ``train_latent_regressor``; the
    oracle-latent row (``predictions`` empty) uses the test images' own ``z`` and ``c``."""
    from ...models.ldm import decode_latents, img2img, load_ldm_folder, sampling_scheduler

    s = settings["sampling"]
    d = prepared.read_subject_file(data)
    rows = np.asarray(d["test/image_index"], np.int64)
    stim = prepared.read_images_file(images, splits=("train", "test"))
    ldm = load_ldm_folder(ldm_folder, setting="latentreg.pretrained_ldm")
    unet, vae, kind = ldm["unet"], ldm["vae"], ldm["kind"]
    device = select_device(training["device"])
    side = int(settings["image_size"])  # the regressors' targets were taken at this size
    pattrs = {}
    if predictions:
        lat = {}
        for branch in ("z", "c"):
            with prepared.open_h5(predictions[branch]) as f:
                lat[branch] = torch.from_numpy(f["pred"][()].astype(np.float32))
                if not np.array_equal(f["image_index"][()], rows):
                    raise InputError(f"{predictions[branch]}: its test rows are not those of {data}")
                pattrs[f"{branch}_regressor"] = str(f.attrs["regressor"])
                pattrs["selection"] = str(f.attrs["selection"])
                pattrs["transductive"] = max(pattrs.get("transductive", 0), int(f.attrs["transductive"]))
        z, c = lat["z"], lat["c"]
    else:  # the ceiling: the test images' own latents through the frozen generator
        z = first_stage_latents(ldm_folder, images, ("test",), side, device)["test"][rows]
        c = torch.from_numpy(read_tokens(text, "test"))[rows]
        pattrs = {"z_regressor": "oracle", "c_regressor": "oracle", "selection": "none", "transductive": 0}
    shape = tuple(z.shape[1:])
    if shape[0] != unet.config.in_channels or shape[1] * 2 ** (len(vae.config.block_out_channels) - 1) != side:
        raise InputError(f"{predictions['z'] if predictions else images}: latents {shape} are not the generator's "
                         f"{unet.config.in_channels} channels at latentreg.image_size {side} px")  # fmt: skip
    if c.shape[-1] != unet.config.cross_attention_dim:
        raise InputError(f"{text}: text tokens {c.shape[-1]} wide, the generator's UNet attends to "
                         f"{unet.config.cross_attention_dim} (its own text encoder's width)")  # fmt: skip
    null = torch.from_numpy(read_null(text))
    sched = sampling_scheduler(ldm["scheduler"], "ddim")
    n, S = len(z), int(s["samples"])
    noise = torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(sample_seed(seed, i, k)))
                         for i in rows for k in range(S)])  # fmt: skip
    torch.manual_seed(seed)
    for m in (unet, vae):
        m.to(device).eval()
    zs, cs = z.repeat_interleave(S, 0), c.repeat_interleave(S, 0)
    bs = int(s["batch_size"])
    n_run = min(int(s["steps"] * s["strength"]), int(s["steps"]))
    progress = Progress("reconstruct_latentreg", math.ceil(n * S / bs), per_epoch=1, epoch_word="batch", unit="batches")
    t0, chunks = time.monotonic(), []
    with torch.no_grad():
        for b, i in enumerate(range(0, n * S, bs)):
            out = img2img(unet, sched, zs[i : i + bs].to(device), cs[i : i + bs].to(device), null.to(device),
                          noise[i : i + bs].to(device), int(s["steps"]), float(s["strength"]), float(s["guidance"]))  # fmt: skip
            chunks.append(decode_latents(vae, kind, out).float().cpu())
            progress.update(b + 1, None, min(bs, n * S - i))
    progress.done()
    x = torch.cat(chunks)
    log.info("img2img: %d samples (%d of %d DDIM steps, guidance %.1f) in %.1f s", n * S, n_run, s["steps"],
             s["guidance"], time.monotonic() - t0)  # fmt: skip
    out_size = int(stim.test.images.shape[1])
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="bicubic", align_corners=False)
    imgs = to_uint8(x, SYMMETRIC).reshape(n, S, out_size, out_size, 3)
    with prepared.open_h5(text) as f:
        tattrs = {k: str(v) for k, v in f.attrs.items()}
    substitutions = [tattrs.get("substitution", "")] + ([] if settings["pretrained_ldm"] else [GENERATOR_SUBSTITUTION])
    write_reconstructions(
        recon, imgs, d, stim.test.names, method=method, family="latentreg" if predictions else "latentreg_oracle", seed=seed,
        transductive=False, selection_on_test=int(pattrs.get("transductive", 0)),
        z_regressor=str(pattrs["z_regressor"]), c_regressor=str(pattrs["c_regressor"]),
        selection=str(pattrs["selection"]), sampler="ddim", steps=int(s["steps"]), strength=float(s["strength"]),
        guidance=float(s["guidance"]), latentreg_size=settings["size"], latentreg_image_size=int(settings["image_size"]),
        substitutions=json.dumps([x for x in substitutions if x]), caption_source=tattrs.get("caption_source", ""),
        text_encoder=tattrs.get("text_encoder", ""), generator=settings["pretrained_ldm"] or str(ldm_folder),
    )  # fmt: skip
