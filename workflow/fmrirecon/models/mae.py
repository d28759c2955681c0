"""Masked autoencoders of paper 001 (CAD): the fMRI MAE (DC-MAE, phase 1), the image MAE and the
bidirectional cross-attention that fuses them (phase 2).

Shapes (B = batch, V = voxels, P = patch size, L = patches, D = embedding width)::

    FmriMAE.patchify      (B, V) -> wrap-pad to L*P -> (B, L, P)
    FmriMAE.encode        (B, V) -> visible tokens (B, L_keep, D), restore ids (B, L)
    FmriMAE.decode        tokens (B, L_keep, D) -> (B, L*P) padded voxel vector
    FmriMAE.features      (B, V) -> all tokens (B, L, D), no masking (what conditions the LDM)
    ImageMAE              (B, 3, H, W) in [-1, 1], patch p -> (B, (H/p)^2, D)
    CrossAttention        query (B, Lq, Dq), context (B, Lc, Dc) -> (B, Lq, Dq)

The encoders are plain pre-norm ViT blocks with fixed sin-cos position embeddings (as in MAE,
He et al. 2022, and MinD-Vis); masking keeps a random subset of tokens drawn from a generator,
so every random choice of a training step is reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from . import SavedNetwork

#: Named sizes. ``paper`` is the published configuration (section 4.2.1: ViT-Large-like fMRI
#: encoder with patch 16, width 1024, 24 layers, 8-layer decoder; the image MAE of He et al. with a
#: 12-layer, 768-wide encoder and a 512-wide decoder), ``tiny`` runs on a laptop CPU.
FMRI_MAE_SIZES = {
    "tiny": dict(patch_size=64, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4),
    "paper": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
}  # fmt: skip
IMAGE_MAE_SIZES = {
    "tiny": dict(patch_size=4, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4),
    "paper": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512, decoder_depth=6, decoder_num_heads=16),
}  # fmt: skip


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sin-cos position embedding, (n, dim)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / max(1, dim // 2))
    out = pos * omega[None]
    emb = torch.cat([out.sin(), out.cos()], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(n, 1, dtype=torch.float64)], dim=1)
    return emb.float()


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding for a side x side grid, (side*side, dim)."""
    half = dim // 2
    row = sincos_1d(side, half).repeat_interleave(side, 0)
    col = sincos_1d(side, dim - half).repeat(side, 1)
    return torch.cat([row, col], dim=1)


#: Hyper-parameters both MAEs share (besides their input shape and patch size).
ARCH_KEYS = ("embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth", "decoder_num_heads")


class Block(nn.Module):
    """Pre-norm transformer block: (B, L, D) -> (B, L, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def random_masking(n: int, length: int, ratio: float, gen: torch.Generator | None, device) -> tuple:
    """MAE masking: ``keep`` (n, L_keep) token ids to keep, ``restore`` (n, L) to undo the shuffle,
    ``mask`` (n, L) with 1 = masked. ``ratio`` 0 keeps everything in order."""
    n_keep = max(1, int(round(length * (1.0 - ratio))))
    if ratio <= 0:
        ids = torch.arange(length, device=device).expand(n, length)
        return ids, ids, torch.zeros(n, length, device=device)
    noise = torch.rand(n, length, generator=gen).to(device)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(n, length, device=device)
    mask[:, :n_keep] = 0
    return shuffle[:, :n_keep], restore, mask.gather(1, restore)


class _MAE(nn.Module):
    """Shared encoder/decoder machinery of the two MAEs (tokens in, tokens out)."""

    def _build(self, length: int, patch_dim: int, embed_dim: int, depth: int, num_heads: int,
               decoder_embed_dim: int, decoder_depth: int, decoder_num_heads: int, pos) -> None:  # fmt: skip
        self.num_patches = length
        self.embed_dim = embed_dim
        self.register_buffer("pos_embed", pos(length, embed_dim), persistent=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", pos(length, decoder_embed_dim), persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_embed_dim, decoder_num_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_dim)
        nn.init.normal_(self.mask_token, std=0.02)

    def decoder_parameters(self):
        mods = [self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred]
        return [self.mask_token] + [p for m in mods for p in m.parameters()]

    def encode_tokens(self, tokens: torch.Tensor, ratio: float, gen=None) -> tuple:
        """(B, L, D) embedded patches -> visible encoded tokens (B, L_keep, D), restore ids, mask."""
        x = tokens + self.pos_embed
        keep, restore, mask = random_masking(x.shape[0], x.shape[1], ratio, gen, x.device)
        x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), restore, mask

    def decode_tokens(self, h: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Visible tokens (B, L_keep, D) -> per-patch predictions (B, L, patch_dim)."""
        x = self.decoder_embed(h)
        n_mask = restore.shape[1] - x.shape[1]
        x = torch.cat([x, self.mask_token.expand(x.shape[0], n_mask, -1)], dim=1)
        x = x.gather(1, restore[..., None].expand(-1, -1, x.shape[-1])) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))


class FmriMAE(SavedNetwork, _MAE):
    """1-D masked autoencoder of a voxel vector (MinD-Vis SC-MBM / CAD DC-MAE backbone).

    The voxel vector is wrap-padded (its first voxels repeated) to a multiple of ``patch_size``
    and cut into patches by a Conv1d with stride = patch size.
    """

    def __init__(self, n_voxels: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 decoder_embed_dim: int, decoder_depth: int, decoder_num_heads: int):  # fmt: skip
        super().__init__()
        self.n_voxels = int(n_voxels)
        self.patch_size = int(patch_size)
        length = math.ceil(self.n_voxels / self.patch_size)
        self.padded = length * self.patch_size
        self.patch_embed = nn.Conv1d(1, embed_dim, kernel_size=patch_size, stride=patch_size)
        self._build(length, patch_size, embed_dim, depth, num_heads, decoder_embed_dim, decoder_depth,
                    decoder_num_heads, sincos_1d)  # fmt: skip

    @classmethod
    def from_size(cls, size: str, n_voxels: int, **overrides) -> FmriMAE:
        kw = dict(FMRI_MAE_SIZES[size])
        kw.update({k: v for k, v in overrides.items() if v})
        return cls(n_voxels, **kw)

    FILE_KEY = "mae"

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(**{k: hp[k] for k in ("n_voxels", "patch_size") + ARCH_KEYS})

    def hparams(self) -> dict:
        return {
            "n_voxels": self.n_voxels, "patch_size": self.patch_size, "embed_dim": self.embed_dim,
            "depth": len(self.blocks), "num_heads": self.blocks[0].attn.num_heads,
            "decoder_embed_dim": self.decoder_embed.out_features, "decoder_depth": len(self.decoder_blocks),
            "decoder_num_heads": self.decoder_blocks[0].attn.num_heads if len(self.decoder_blocks) else 1,
        }  # fmt: skip

    def check_fits(self, n_voxels: int, what: str) -> None:
        """Raise when ``n_voxels`` does not give this model's patch count."""
        length = math.ceil(n_voxels / self.patch_size)
        if length != self.num_patches:
            raise InputError(
                f"{what}: {n_voxels} voxels make {length} patches of {self.patch_size}, but the "
                f"pretrained fMRI MAE expects {self.n_voxels} voxels ({self.num_patches} patches); "
                "use the ROI and subject it was pretrained on"
            )

    def pad(self, v: torch.Tensor) -> torch.Tensor:
        """(B, V) -> (B, L*P) by wrapping the first voxels around."""
        extra = self.padded - v.shape[1]
        if extra < 0 or v.shape[1] != self.n_voxels:
            self.check_fits(v.shape[1], "fMRI input")
        return torch.cat([v, v[:, :extra]], dim=1) if extra else v

    def embed(self, v: torch.Tensor) -> torch.Tensor:
        """(B, V) -> (B, L, D)."""
        return self.patch_embed(self.pad(v)[:, None, :]).transpose(1, 2)

    def encode(self, v: torch.Tensor, ratio: float = 0.0, gen=None) -> tuple:
        return self.encode_tokens(self.embed(v), ratio, gen)

    def decode(self, h: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """-> (B, L*P): the reconstructed padded voxel vector."""
        return self.decode_tokens(h, restore).flatten(1)

    def features(self, v: torch.Tensor) -> torch.Tensor:
        """Unmasked encoder tokens (B, L, D)."""
        return self.encode(v, 0.0)[0]


class ImageMAE(SavedNetwork, _MAE):
    """ViT masked autoencoder of images (B, 3, H, W) in [-1, 1]; predicts normalised-free pixels."""

    def __init__(self, image_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 decoder_embed_dim: int, decoder_depth: int, decoder_num_heads: int):  # fmt: skip
        super().__init__()
        if image_size % patch_size:
            raise InputError(f"cad.image_size {image_size} is not a multiple of the image MAE patch {patch_size}")
        self.image_size, self.patch_size = int(image_size), int(patch_size)
        self.side = image_size // patch_size
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self._build(self.side**2, 3 * patch_size**2, embed_dim, depth, num_heads, decoder_embed_dim,
                    decoder_depth, decoder_num_heads, lambda n, d: sincos_2d(self.side, d))  # fmt: skip

    @classmethod
    def from_size(cls, size: str, image_size: int, **overrides) -> ImageMAE:
        kw = dict(IMAGE_MAE_SIZES[size])
        kw.update({k: v for k, v in overrides.items() if v})
        return cls(image_size, **kw)

    FILE_KEY = "mae"

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(**{k: hp[k] for k in ("image_size", "patch_size") + ARCH_KEYS})

    def hparams(self) -> dict:
        return {
            "image_size": self.image_size, "patch_size": self.patch_size, "embed_dim": self.embed_dim,
            "depth": len(self.blocks), "num_heads": self.blocks[0].attn.num_heads,
            "decoder_embed_dim": self.decoder_embed.out_features, "decoder_depth": len(self.decoder_blocks),
            "decoder_num_heads": self.decoder_blocks[0].attn.num_heads if len(self.decoder_blocks) else 1,
        }  # fmt: skip

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, L, p*p*3)."""
        b, p, s = x.shape[0], self.patch_size, self.side
        return x.reshape(b, 3, s, p, s, p).permute(0, 2, 4, 3, 5, 1).reshape(b, s * s, p * p * 3)

    def encode(self, x: torch.Tensor, ratio: float = 0.0, gen=None) -> tuple:
        return self.encode_tokens(self.patch_embed(x).flatten(2).transpose(1, 2), ratio, gen)

    def decode(self, h: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """-> (B, L, p*p*3) patch predictions (compare with :meth:`patchify`)."""
        return self.decode_tokens(h, restore)


class CrossAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_k)) V with Q from ``query`` tokens and K, V from ``context`` tokens
    (eq. 4), projected back to the query width so it can be added to the query stream (eqs. 5-6)."""

    def __init__(self, query_dim: int, context_dim: int, dim: int = 0, heads: int = 4):
        super().__init__()
        dim = dim or query_dim
        self.heads = heads
        self.q = nn.Linear(query_dim, dim)
        self.k = nn.Linear(context_dim, dim)
        self.v = nn.Linear(context_dim, dim)
        self.out = nn.Linear(dim, query_dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, lq, _ = query.shape
        lc = context.shape[1]
        h = self.heads
        q = self.q(query).reshape(b, lq, h, -1).transpose(1, 2)
        k = self.k(context).reshape(b, lc, h, -1).transpose(1, 2)
        v = self.v(context).reshape(b, lc, h, -1).transpose(1, 2)
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(att.transpose(1, 2).reshape(b, lq, -1))


class CrossModalFusion(nn.Module):
    """Both directions of phase 2: fMRI tokens attend to image tokens (CA_F) and image tokens
    attend to fMRI tokens (CA_I); each result is added to its own stream (residual)."""

    def __init__(self, fmri_dim: int, image_dim: int, heads: int = 4):
        super().__init__()
        self.ca_f = CrossAttention(fmri_dim, image_dim, heads=heads)
        self.ca_i = CrossAttention(image_dim, fmri_dim, heads=heads)

    def forward(self, h_f: torch.Tensor, h_i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if h_f.shape[0] != h_i.shape[0]:
            raise ValueError(f"fMRI batch {h_f.shape[0]} != image batch {h_i.shape[0]}")
        return h_f + self.ca_f(h_f, h_i), h_i + self.ca_i(h_i, h_f)
