"""Rules ``pretrain_fmri_mae`` (phase 1, DC-MAE), ``pretrain_image_mae`` (the image MAE phase 2
starts from) and ``tune_cross_modal`` (phase 2) of paper 001.

Each function takes its stage's slice of one method's merged ``cad`` settings
(:func:`.settings.stage_settings`), the ``training`` block, input and output paths. Every random
draw of a step (masks, sparsification) comes from the step's generator, so a resumed run is
bit-exact.

Pretraining on a pool in another voxel space (``cad.fmri_mae.pool``, rule
``pretrain_fmri_mae_pool``): phase 1 runs once on ``results/pools/<pool>/pool.h5`` (HCP as the
paper, or the simulated HCP-like pool), the model built for the pool's padded voxel count; the
subject is met only from phase 2 on. The two voxel spaces are bridged as CAD's code does
(``vis_dec_neurips/code/phase2_finetune_cross.py``, the same lines as MinD-Vis'
``stageA2_mbm_finetune.py``): the subject's vector, already wrap-padded to a multiple of the patch
size, is wrap-padded further (``np.pad(..., 'wrap')``) up to the pretrained voxel count when it is
shorter, and cut to its first ``n`` voxels when it is longer (:func:`bridge_voxels`). No voxel is
matched to a pool voxel: the encoder's patches see the subject's voxels in the subject's order,
and phase 2 adapts it. We bridge in every later stage (phase 2, ``train_ldm``, ``reconstruct_cad``),
so the encoder always sees the grid it was trained on; CAD's ``ldm_finetune.py`` instead rebuilds
the encoder at the subject's own length and interpolates its position embedding
(``interpolate_pos_embed``, nearest), a difference we do not reproduce. The subject's samples are
z-scored per sample on their own voxels (:func:`fmri_tensor`) before bridging, where CAD z-scores
them with one scalar per subject; the pool's samples keep MinD-Vis' scalar z-score from
``pool.h5`` and then get the same per-sample z-score, so both are on one scale. The models'
hyper-parameters record ``pool``, ``pool_voxels``, ``subject_voxels`` and ``bridge``.
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


def bridge_voxels(x: np.ndarray | torch.Tensor, n_voxels: int, patch_size: int):
    """(N, V) -> (N, n_voxels): CAD's bridge from a subject's voxels to a pretrained grid.

    Step 1 wrap-pads V to a multiple of ``patch_size`` (the subject's own patching); step 2
    wrap-pads that vector (cyclically, as ``np.pad(mode='wrap')``) up to ``n_voxels`` when it is
    shorter, else keeps its first ``n_voxels`` entries.
    """

    def wrap(v, n):  # np.pad(v, ((0, 0), (0, n - V)), mode="wrap"): the vector repeated cyclically
        reps = -(-n // v.shape[1])
        return (v.repeat(1, reps) if isinstance(v, torch.Tensor) else np.tile(v, (1, reps)))[:, :n]

    x = wrap(x, -(-x.shape[1] // patch_size) * patch_size)
    return x[:, :n_voxels] if x.shape[1] >= n_voxels else wrap(x, n_voxels)


def subject_fmri(x: np.ndarray, encoder: dict) -> torch.Tensor:
    """A subject's (N, V) voxels as the fMRI encoder with hyper-parameters ``encoder`` takes them:
    :func:`fmri_tensor`, then :func:`bridge_voxels` to the pool's grid when the encoder was
    pretrained on a pool (unchanged otherwise; the caller checks the fit)."""
    t = fmri_tensor(x)
    if encoder.get("pool"):
        t = bridge_voxels(t, int(encoder["n_voxels"]), int(encoder["patch_size"]))
    return t


def pool_fields(encoder: dict, subject_voxels: int) -> dict:
    """The bridge's provenance carried into the next model's hyper-parameters (none without a pool)."""
    if not encoder.get("pool"):
        return {}
    keys = ("pool", "pool_file", "pool_voxels", "bridge")
    return {**{k: encoder[k] for k in keys if k in encoder}, "subject_voxels": int(subject_voxels)}


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
def _dc_mae_step(mae: FmriMAE, x: torch.Tensor, s: dict, device):
    """One DC-MAE step on rows ``idx`` of ``x`` (eq. 3: two masked views of the sparsified sample)."""
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

    return step


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
    step = _dc_mae_step(mae, x, s, device)
    fp = fingerprint("pretrain_fmri_mae", [settings["size"], s, splits], seed, [data], training, device)
    trainer, history = fit("pretrain_fmri_mae", {"mae": mae}, s, training, checkpoint_dir, fp, seed,
                           device, len(x), step)  # fmt: skip
    hp = {**mae.hparams(), "stage": "dc_mae", "settings": s, "n_samples": len(x),
          "used_test_fmri": "test" in splits, "source": str(data)}  # fmt: skip
    save_model(model, {"mae": mae}, hp)
    finish(trainer, history, loss_log, train_summary, settings)


def pretrain_fmri_mae_pool(pool: str, settings: dict, training: dict, checkpoint_dir: str, seed: int,
                           model: str, loss_log: str, train_summary: str = "") -> None:  # fmt: skip
    """Rule ``pretrain_fmri_mae_pool``: DC-MAE once on a pool (``pool.h5`` of rule ``prepare_pool``),
    in the pool's voxel space; phase 2 bridges each subject to it (:func:`bridge_voxels`).

    Raises:
        InputError: the pool's padded voxel count does not fill whole patches of the model.
    """
    s = settings["fmri_mae"]
    from ...data.pools import read_pool

    raw, attrs = read_pool(pool)
    device = select_device(training["device"])
    torch.manual_seed(seed)  # initial weights
    mae = build_fmri_mae(settings, raw.shape[1]).to(device)
    if raw.shape[1] % mae.patch_size:
        raise InputError(f"{pool}: {raw.shape[1]} voxels (padded to patches of {attrs.get('patch_size')}) cannot be "
                         f"patched by the fMRI MAE's {mae.patch_size}; set pools.{attrs.get('pool')}.patch_size "
                         f"or cad.fmri_mae.patch_size so that they agree")  # fmt: skip
    x = fmri_tensor(raw)
    log.info("DC-MAE on pool %s: %d samples x %d voxels (%d before padding) -> %d patches of %d; %.2fM parameters",
             attrs.get("pool"), len(x), x.shape[1], int(attrs.get("n_voxels", x.shape[1])), mae.num_patches,
             mae.patch_size, sum(p.numel() for p in mae.parameters()) / 1e6)  # fmt: skip
    step = _dc_mae_step(mae, x, s, device)
    fp = fingerprint("pretrain_fmri_mae_pool", [settings["size"], s], seed, [pool], training, device)
    trainer, history = fit("pretrain_fmri_mae_pool", {"mae": mae}, s, training, checkpoint_dir, fp, seed,
                           device, len(x), step)  # fmt: skip
    hp = {**mae.hparams(), "stage": "dc_mae", "settings": s, "n_samples": len(x), "used_test_fmri": False,
          "source": str(pool), "pool": str(attrs.get("pool", "")), "pool_file": str(pool),
          "pool_voxels": int(attrs.get("n_voxels", x.shape[1])), "bridge": "wrap_pad_or_truncate"}  # fmt: skip
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
    phase1 = read_hparams(fmri_mae)
    v_all = subject_fmri(d["train/fmri"], phase1)  # bridged to the pool's grid after a pool pretraining
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
          "used_test_fmri": bool(phase1.get("used_test_fmri", False)),
          **pool_fields(phase1, d["train/fmri"].shape[1])}  # fmt: skip
    save_model(model, {"mae": fmri}, hp)
    finish(trainer, history, loss_log, train_summary, settings)


