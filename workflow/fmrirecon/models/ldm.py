"""The latent diffusion side of paper 001 (CAD), built on diffusers.

- first stage: ``AutoencoderKL`` or ``VQModel`` (images (B, 3, H, W) in [-1, 1] <-> latents
  (B, 4, H/f, W/f));
- the denoiser: ``UNet2DConditionModel`` with cross-attention (width ``cross_attention_dim``) and
  ``class_embed_type='projection'``, so a pooled condition vector is added to the time embedding
  (the double conditioning of MinD-Vis / CAD section 4.2.2);
- :class:`LabelConditioner` turns category ids into that condition (our own label-to-image LDM);
- :class:`FmriConditioner` turns fMRI into it, as MinD-Vis' ``cond_stage_model`` (the code CAD
  builds on): the fMRI MAE encoder's token sequence (B, L, D) goes through a channel mapper (1x1
  convolutions over the token axis, L -> L/2 -> T) and a dimension mapper (D -> cross_attention_dim)
  to T condition tokens for keys/values; a learned pooling of those tokens (T -> T/2 -> 1, MinD-Vis'
  ``time_embed_condtion``) projected to the pooled vector (B, pooled_dim).

An LDM folder is a diffusers layout: ``vae/`` (AutoencoderKL) or ``vqvae/`` (VQModel), ``unet/``
and ``scheduler/``, each with ``config.json`` and ``diffusion_pytorch_model.safetensors``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from .mae import FmriMAE

log = logging.getLogger(__name__)

#: Named sizes of the first stage and the UNet. ``tiny``: a 32 px image -> 4x8x8 latents;
#: ``paper``: the LDM f=4 VQ first stage on 256 px (64x64x3 latents in the paper; 4 channels here)
#: and a UNet of the label-to-image LDM's width (~400M parameters).
AUTOENCODER_SIZES = {
    "tiny": dict(block_out_channels=(16, 32, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8),
    "paper": dict(block_out_channels=(128, 256, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32),
}  # fmt: skip
UNET_SIZES = {
    "tiny": dict(block_out_channels=(32, 64, 64), layers_per_block=1, cross_attention_dim=64,
                 attention_head_dim=8, pooled_dim=64, norm_num_groups=16),
    "paper": dict(block_out_channels=(192, 384, 576, 960), layers_per_block=2, cross_attention_dim=512,
                  attention_head_dim=32, pooled_dim=512, norm_num_groups=32),
}  # fmt: skip
#: Condition tokens the fMRI conditioner makes per size (MinD-Vis' code uses 77, CLIP's length).
CONDITION_TOKENS = {"tiny": 64, "paper": 77}
FIRST_STAGE_FOLDERS = {"kl": "vae", "vq": "vqvae"}


def build_autoencoder(kind: str, size: str):
    from diffusers import AutoencoderKL, VQModel

    s = AUTOENCODER_SIZES[size]
    n = len(s["block_out_channels"])
    common = dict(
        in_channels=3, out_channels=3, block_out_channels=s["block_out_channels"],
        layers_per_block=s["layers_per_block"], latent_channels=s["latent_channels"],
        norm_num_groups=s["norm_num_groups"], down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
    )  # fmt: skip
    if kind == "kl":
        return AutoencoderKL(**common)
    return VQModel(**common, num_vq_embeddings=256, vq_embed_dim=s["latent_channels"])


def downsample_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def build_unet(size: str, latent_size: int, latent_channels: int = 4, cross_attention_dim: int = 0,
               pooled_dim: int = 0, pooled: bool = True):  # fmt: skip
    """A fresh UNet of a named size (widths of the conditions overridable); ``pooled=False``:
    cross-attention only, no pooled condition in the time embedding (as Stable Diffusion's)."""
    from diffusers import UNet2DConditionModel

    s = dict(UNET_SIZES[size])
    s["cross_attention_dim"] = cross_attention_dim or s["cross_attention_dim"]
    s["pooled_dim"] = pooled_dim or s["pooled_dim"]
    n = len(s["block_out_channels"])
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
        block_out_channels=s["block_out_channels"], layers_per_block=s["layers_per_block"],
        down_block_types=down, up_block_types=up, cross_attention_dim=s["cross_attention_dim"],
        attention_head_dim=s["attention_head_dim"], norm_num_groups=s["norm_num_groups"],
        class_embed_type="projection" if pooled else None,
        projection_class_embeddings_input_dim=s["pooled_dim"] if pooled else None,
    )  # fmt: skip


def train_scheduler():
    """DDPM, 1000 steps, scaled-linear betas (the LDM schedule)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False)  # fmt: skip


def sampling_scheduler(train_sched, sampler: str):
    """``plms`` = diffusers' PNDM with ``skip_prk_steps`` (the paper's PLMS), or ``ddim`` (eta 0)."""
    from diffusers import DDIMScheduler, PNDMScheduler

    if sampler == "plms":
        return PNDMScheduler.from_config(train_sched.config, skip_prk_steps=True)
    return DDIMScheduler.from_config(train_sched.config)


class LabelConditioner(nn.Module):
    """Category id (B,) -> tokens (B, n_tokens, cross_dim) and pooled (B, pooled_dim). Id
    ``n_classes`` is the null class (unknown category, and the dropped condition)."""

    def __init__(self, n_classes: int, cross_dim: int, pooled_dim: int, n_tokens: int = 1):
        super().__init__()
        self.n_classes, self.n_tokens, self.cross_dim = n_classes, n_tokens, cross_dim
        self.tokens = nn.Embedding(n_classes + 1, n_tokens * cross_dim)
        self.pooled = nn.Embedding(n_classes + 1, pooled_dim)

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens(labels).reshape(len(labels), self.n_tokens, self.cross_dim), self.pooled(labels)


class FmriConditioner(nn.Module):
    """fMRI (B, V) -> the UNet's conditions: ``n_tokens`` tokens (B, T, cross_dim) for the
    cross-attention keys and values, and a pooled vector (B, pooled_dim) added to the time embedding.

    MinD-Vis' conditioner: the encoder's L patch tokens are mixed into T condition tokens by a
    channel mapper (1x1 Conv1d over the token axis, L -> L/2 -> T), so every condition token sees
    every voxel patch, then widened by a dimension mapper; the pooled vector is a learned weighted
    pooling of the condition tokens (T -> T/2 -> 1).
    """

    def __init__(self, encoder: FmriMAE, cross_dim: int, pooled_dim: int, n_tokens: int):
        super().__init__()
        self.encoder = encoder
        length, half = encoder.num_patches, max(1, encoder.num_patches // 2)
        self.channel_mapper = nn.Sequential(nn.Conv1d(length, half, 1), nn.Conv1d(half, n_tokens, 1))
        self.dim_mapper = nn.Linear(encoder.embed_dim, cross_dim)
        self.token_pool = nn.Sequential(nn.Conv1d(n_tokens, max(1, n_tokens // 2), 1), nn.Conv1d(max(1, n_tokens // 2), 1, 1))
        self.to_pooled = nn.Linear(cross_dim, pooled_dim)

    @property
    def widths(self) -> dict:
        return {"cross_attention_dim": self.dim_mapper.out_features, "pooled_dim": self.to_pooled.out_features,
                "condition_tokens": self.channel_mapper[1].out_channels}  # fmt: skip

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.dim_mapper(self.channel_mapper(self.encoder.features(v)))
        return tokens, self.to_pooled(self.token_pool(tokens)[:, 0])


def check_unet_fits(unet, cross_dim: int, pooled_dim: int, where: str) -> None:
    """Fail clearly when the UNet's cross-attention / class-projection widths differ from ours."""
    have = unet.config.cross_attention_dim
    if have != cross_dim:
        raise InputError(
            f"{where}: the UNet's cross_attention_dim is {have} but the fMRI encoder's condition tokens "
            f"are {cross_dim} wide; use a UNet built with cross_attention_dim={cross_dim} or pick the "
            "cad.size whose width matches"
        )
    if unet.config.class_embed_type == "projection" and unet.config.projection_class_embeddings_input_dim != pooled_dim:
        raise InputError(
            f"{where}: the UNet's projection_class_embeddings_input_dim is "
            f"{unet.config.projection_class_embeddings_input_dim}, the fMRI pooled condition is {pooled_dim}"
        )


def is_condition_parameter(name: str) -> bool:
    """The UNet parameters MinD-Vis / CAD fine-tune with fMRI: the cross-attention layers
    (``attn2``), the layer norms in front of them (``norm2`` of the transformer blocks) and the
    projection of the pooled condition into the time embedding (``class_embedding``, MinD-Vis'
    ``time_embed_condtion``)."""
    return ".attn2." in name or (".transformer_blocks." in name and ".norm2." in name) or name.startswith("class_embedding.")


def freeze_for_fmri_tuning(unet) -> list[nn.Parameter]:
    """Freeze the UNet except its condition parameters (:func:`is_condition_parameter`); return those."""
    unet.requires_grad_(False)
    params = []
    for name, p in unet.named_parameters():
        if is_condition_parameter(name):
            p.requires_grad_(True)
            params.append(p)
    return params


def load_ldm_folder(folder: str | os.PathLike, setting: str = "cad.pretrained_ldm") -> dict:
    """Read a diffusers LDM folder: {"vae", "kind", "unet", "scheduler"} on CPU, eval mode.

    Raises:
        InputError: the folder or one of its parts is missing or unreadable.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel, VQModel

    root = Path(folder)
    if not root.is_dir():
        raise InputError(
            f"{setting}: {root} is not a folder; expected a diffusers LDM folder with "
            "vae/ (or vqvae/), unet/ and scheduler/ (or leave pretrained_ldm empty to train our own)"
        )
    kind = next((k for k, sub in FIRST_STAGE_FOLDERS.items() if (root / sub / "config.json").exists()), None)
    if kind is None or not (root / "unet" / "config.json").exists():
        raise InputError(f"{root}: expected vae/config.json (or vqvae/config.json) and unet/config.json")
    try:
        vae_cls = AutoencoderKL if kind == "kl" else VQModel
        vae = vae_cls.from_pretrained(root / FIRST_STAGE_FOLDERS[kind])
        unet = UNet2DConditionModel.from_pretrained(root / "unet")
        sched = (DDPMScheduler.from_pretrained(root / "scheduler") if (root / "scheduler").is_dir()
                 else train_scheduler())  # fmt: skip
    except (OSError, ValueError) as exc:
        raise InputError(f"{root}: not a readable diffusers LDM folder ({exc})") from None
    if unet.config.cross_attention_dim is None:
        raise InputError(f"{root}/unet: the UNet has no cross-attention (cross_attention_dim is null)")
    vae.eval()
    unet.eval()
    return {"vae": vae, "kind": kind, "unet": unet, "scheduler": sched}


def encode_latents(vae, kind: str, x: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> scaled latents (the posterior mean for a KL first stage)."""
    scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    if kind == "kl":
        return vae.encode(x).latent_dist.mean * scale
    return vae.encode(x).latents * scale


def decode_latents(vae, kind: str, z: torch.Tensor) -> torch.Tensor:
    scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    return vae.decode(z / scale).sample.clamp(-1, 1)


@torch.no_grad()
def sample(unet, scheduler, tokens: torch.Tensor, pooled: torch.Tensor | None, noise: torch.Tensor,
           steps: int, on_step=None) -> torch.Tensor:  # fmt: skip
    """Denoise ``noise`` (B, C, h, w) with conditions (B, L, D) / (B, P) in ``steps`` steps;
    ``on_step(k)`` (if given) is called after the k-th (1-based) step, e.g. to log progress."""
    scheduler.set_timesteps(steps)
    z = noise * scheduler.init_noise_sigma
    class_labels = pooled if unet.config.class_embed_type == "projection" else None
    for k, t in enumerate(scheduler.timesteps, 1):
        inp = scheduler.scale_model_input(z, t)
        eps = unet(inp, t, encoder_hidden_states=tokens, class_labels=class_labels).sample
        z = scheduler.step(eps, t, z).prev_sample
        if on_step is not None:
            on_step(k)
    return z


@torch.no_grad()
def img2img(unet, scheduler, z0: torch.Tensor, tokens: torch.Tensor, null_tokens: torch.Tensor,
            noise: torch.Tensor, steps: int, strength: float, guidance: float) -> torch.Tensor:  # fmt: skip
    """Stable Diffusion's img2img with classifier-free guidance (paper 003's generation).

    The scheduler (DDIM) gets ``steps`` timesteps; the start latent ``z0`` (B, C, h, w) is noised to
    the timestep ``int(steps * strength)`` steps before the end (the DDIM stochastic encode), and
    the last ``int(steps * strength)`` steps denoise it with ``eps_u + guidance * (eps_c - eps_u)``,
    ``eps_c`` from ``tokens`` (B, L, D), ``eps_u`` from ``null_tokens`` (L, D) (the empty caption).
    ``strength`` 1 starts from pure noise at the first timestep; 0 returns ``z0``.
    """
    scheduler.set_timesteps(steps)
    n_run = min(int(steps * strength), steps)
    if n_run == 0:
        return z0
    timesteps = scheduler.timesteps[steps - n_run :]
    z = scheduler.add_noise(z0, noise, timesteps[:1].repeat(len(z0)))
    null = null_tokens[None].expand(len(z0), *null_tokens.shape).to(tokens)
    cond = torch.cat([null, tokens])
    for t in timesteps:
        inp = scheduler.scale_model_input(torch.cat([z, z]), t)
        eps_u, eps_c = unet(inp, t, encoder_hidden_states=cond).sample.chunk(2)
        z = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, z).prev_sample
    return z
