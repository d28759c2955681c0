"""Rules ``train_pix2pix`` and ``reconstruct_pix2pix``: paper 004's pix2pix decoder from fMRI.

The fMRI of a test or training sample becomes a square map (:func:`fmri_maps`): its channels
(:func:`.labels.fmri_channels`: left/right hemisphere for surface data, else one) zero-padded to
``side²`` (default the smallest square that holds them — 145 for Algonauts' 21025 — or
``map_side``) and reshaped row-major (:func:`~fmrirecon.models.pix2pix.fmri_map`'s layout), then
resized to the generator's side: nearest-neighbour when enlarging (the paper's 145 → 256), area
averaging when shrinking (a CPU-size generator smaller than the map; named in the model file).

Training (one :class:`~fmrirecon.train.loop.Trainer` with two phases per step, pix2pix's order):
the discriminator on (map, image) against (map, G(map)), then the generator against the updated
discriminator with ``adv + l1_weight · L1``. The step's random jitter (resize to ``load_size``,
the same random crop of map and image) is drawn once, from the first phase's seeded generator, and
reused by the second. Images are in [-1, 1] for the networks (``tanh``) and mapped back to uint8.

Reconstruction (``pix2pix.inference``): ``batch_stats`` (default) runs the generator as pix2pix
does at test time — BatchNorm with the statistics of the test batch (here every test pattern in one
batch) and dropout on, seeded, so the numbers are reproducible; ``running_stats`` uses eval mode
(BatchNorm's running training statistics, no dropout). On GOD-like data the two differ: the
training fMRI are single trials and the test fMRI averages of repeats (about 0.7 of their standard
deviation on the default), and the running statistics then misnormalise every test pattern.
``batch_stats`` shares per-channel means and variances across the test patterns (no image); the
reconstruction's attributes say which was used.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from ...data import prepared
from ...errors import InputError
from ...losses_pix2pix import discriminator_loss, generator_loss
from ...models.pix2pix import SIZES, PatchDiscriminator, UNetGenerator, random_jitter, resize_map, square_side
from ...train.device import select_device
from ...train.files import read_hparams, save_model
from ...train.loop import Phase, Trainer
from ...train.records import write_loss_log, write_train_summary
from ..common import SYMMETRIC, batched, fingerprint, image_tensor, to_uint8, write_reconstructions
from .labels import fmri_channels

log = logging.getLogger(__name__)


def generator_side(settings: dict) -> int:
    return int(settings["image_size"] or SIZES[settings["size"]]["image"])


def fmri_maps(channels: np.ndarray, side: int, target: int) -> torch.Tensor:
    """(N, C, L) padded channels → (N, C, target, target) maps (see the module doc)."""
    n, c, length = channels.shape
    if length > side * side:
        raise InputError(f"pix2pix: {length} voxels per channel do not fit a {side}x{side} map (map_side)")
    flat = np.zeros((n, c, side * side), np.float32)
    flat[:, :, :length] = channels
    maps = torch.from_numpy(flat.reshape(n, c, side, side))
    if side == target:
        return maps
    if side > target:
        return F.adaptive_avg_pool2d(maps, target) if side % target else F.avg_pool2d(maps, side // target)
    return resize_map(maps, target, "nearest")


def _prepared_maps(d, settings: dict, keys=("train/fmri", "test/fmri")) -> tuple[dict, dict]:
    chans, layout = fmri_channels(d, splits=keys, layout=settings["layout"])
    side = int(settings["map_side"] or square_side(layout["length"]))
    target = generator_side(settings)
    maps = {k: fmri_maps(v, side, target) for k, v in chans.items()}
    resize = "none" if side == target else ("nearest (enlarge)" if side < target else "area average (shrink)")
    return maps, {**layout, "map_side": side, "generator_side": target, "map_resize": resize}


def train_pix2pix(method: str, data: str, images: str, settings: dict, training: dict, seed: int,
                  checkpoint_dir: str, model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Train one pix2pix generator and discriminator on the training pairs (module doc)."""
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("train", "test"))
    maps, layout = _prepared_maps(d, settings, ("train/fmri",))
    x = maps["train/fmri"]
    side = layout["generator_side"]
    targets = image_tensor(stim.train.images, side, SYMMETRIC)
    rows = torch.from_numpy(d["train/image_index"].astype(np.int64))
    device = select_device(training["device"])
    torch.manual_seed(seed)
    G = UNetGenerator(x.shape[1], 3, settings["size"]).to(device)
    D = PatchDiscriminator(x.shape[1], 3, settings["size"]).to(device)
    load = int(round(side * SIZES[settings["size"]]["load"] / SIZES[settings["size"]]["image"]))
    batch: dict[str, torch.Tensor] = {}

    def d_step(idx, gen):  # the step's jitter is drawn here, once, and reused by the generator phase
        xb, yb = x[idx], targets[rows[idx]]
        if settings["jitter"]:
            xb, yb = random_jitter(xb, yb, generator=gen, load_size=load, mirror=settings["mirror"])
        batch["x"], batch["y"] = xb.to(device), yb.to(device)
        with torch.no_grad():
            fake = G(batch["x"])
        return discriminator_loss(D(batch["x"], batch["y"]), D(batch["x"], fake))

    def g_step(idx, gen):
        fake = G(batch["x"])
        return generator_loss(D(batch["x"], fake), fake, batch["y"], settings["l1_weight"])

    opt = {k: settings["train"][k] for k in ("optimizer", "lr", "betas") if k in settings["train"]}
    fp = fingerprint("train_pix2pix", settings, seed, [data, images], training, device)
    trainer = Trainer(name=f"train_pix2pix[{method}]", modules={"generator": G, "discriminator": D},
                      settings=settings["train"], training=training, checkpoint_dir=checkpoint_dir, fingerprint=fp,
                      seed=seed, device=device,
                      phases=[Phase("discriminator", D.parameters(), d_step, opt),
                              Phase("generator", G.parameters(), g_step, opt)])  # fmt: skip
    trainer.fit(len(x))
    hp = {**G.hparams, "method": method, "seed": seed, "layout": layout, "settings": settings}
    save_model(model, {"generator": G, "discriminator": D}, hp)
    write_loss_log(loss_log, trainer.history)
    if train_summary:
        write_train_summary(train_summary, trainer, {"stage_settings": settings, "fmri_map": layout})
    trainer.finish()


def reconstruct_pix2pix(method: str, data: str, images: str, model: str, training: dict, seed: int,
                        recon: str) -> None:  # fmt: skip
    """Generate one image per test fMRI pattern with a trained generator."""
    d = prepared.read_subject_file(data)
    stim = prepared.read_images_file(images, splits=("test",))
    hp = read_hparams(model)
    maps, layout = _prepared_maps(d, hp["settings"], ("test/fmri",))
    want = {k: hp["layout"][k] for k in ("voxels_per_channel", "map_side", "generator_side")}
    got = {k: layout[k] for k in want}
    if want != got:
        raise InputError(f"{model}: trained on an fMRI map {want}, {data} gives {got}")
    device = select_device(training["device"])
    G = UNetGenerator.from_file(model).to(device)
    mode = hp["settings"].get("inference", "batch_stats")
    if mode == "batch_stats":  # pix2pix at test time: the test batch's statistics, dropout on (seeded)
        G.train()
        torch.manual_seed(seed)
        with torch.no_grad():
            imgs = G(maps["test/fmri"].to(device)).float().cpu()
    else:
        imgs = batched(G.eval(), maps["test/fmri"], device=device)
    imgs = (imgs + 1.0) / 2.0
    size = stim.test.images.shape[1]
    if imgs.shape[-1] != size:
        imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", align_corners=False)
    write_reconstructions(recon, to_uint8(imgs), d, stim.test.names, method=method, family="pix2pix", seed=seed,
                          inference=mode, fmri_map=f"{layout['layout']} {layout['map_side']}x{layout['map_side']} -> "
                                   f"{layout['generator_side']} ({layout['map_resize']})")  # fmt: skip
