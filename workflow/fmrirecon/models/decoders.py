"""fMRI → image decoders (paper 002, paper 000) and paper 000's F-attention decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import SavedNetwork

SSL_SIZES = {
    # base: side of the first feature map (output = base × 2³); channels; GroupNorm groups
    "tiny": {"out": 32, "channels": 32, "base_channels": 64, "groups": 8},
    "paper": {"out": 112, "channels": 64, "base_channels": 64, "groups": 16},
}
LOOP_SIZES = {
    "tiny": {"out": 32, "channels": 32, "base_channels": 64, "groups": 8},
    "paper": {"out": 112, "channels": 64, "base_channels": 128, "groups": 16},
}
ATTENTION_SIZES = {
    # base: FC output side and channels; attn: side at which the self-attention runs; qk: Q/K width
    "tiny": {"base": 4, "base_channels": 64, "attn": 16, "channels": 32, "qk": 8, "out": 32},
    "paper": {"base": 10, "base_channels": 512, "attn": 68, "channels": 64, "qk": 8, "out": 112},
}


def _glorot(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _upsampling_blocks(c_in: int, channels: int, groups: int, kernel: int) -> nn.Sequential:
    """Three × [bilinear ×2 upsampling, conv, ReLU, GroupNorm]: side × 8."""
    blocks = []
    for _ in range(3):
        blocks += [
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(c_in, channels, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.GroupNorm(groups, channels),
        ]
        c_in = channels
    return nn.Sequential(*blocks)


class SSLDecoder(SavedNetwork, nn.Module):
    """Paper 002: fMRI → (C0, s, s) by a dense layer, three × [×2 upsample, 5×5 conv, ReLU,
    GroupNorm], a final 5×5 conv to RGB and a sigmoid."""

    def __init__(self, n_voxels: int, size: str = "tiny"):
        super().__init__()
        d = SSL_SIZES[size]
        self.hparams = {"n_voxels": int(n_voxels), "size": size}
        self.base = d["out"] // 8
        self.c0 = d["base_channels"]
        self.fc = nn.Linear(n_voxels, self.c0 * self.base * self.base)
        self.blocks = _upsampling_blocks(self.c0, d["channels"], d["groups"], kernel=5)
        self.out = nn.Conv2d(d["channels"], 3, 5, padding=2)
        _glorot(self)

    FILE_KEY = "decoder"

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["n_voxels"], hp["size"])

    def forward(self, fmri: torch.Tensor) -> torch.Tensor:
        h = self.fc(fmri).view(-1, self.c0, self.base, self.base)
        return torch.sigmoid(self.out(self.blocks(h)))


class GuidedDecoder(SavedNetwork, nn.Module):
    """Paper 000's image decoder: dense layer, [bilinear ×2 upsample, conv, ReLU, GroupNorm] blocks,
    then the F-attention guidance ``Feature = λ·(FA ∘ ConvF) + μ·ConvF`` (eq. 4) on the last
    feature map, and a conv to RGB with a sigmoid. ``fa`` is (B, 1, h, w) in [0, 1] or None."""

    def __init__(self, n_voxels: int, size: str = "tiny", lam: float = 0.7, mu: float = 0.3):
        super().__init__()
        d = LOOP_SIZES[size]
        self.hparams = {"n_voxels": int(n_voxels), "size": size, "lambda": lam, "mu": mu}
        self.base, self.c0 = d["out"] // 8, d["base_channels"]
        self.lam, self.mu = float(lam), float(mu)
        self.fc = nn.Linear(n_voxels, self.c0 * self.base * self.base)
        self.blocks = _upsampling_blocks(self.c0, d["channels"], d["groups"], kernel=3)
        c = d["channels"]
        self.conv_f = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(c, 3, 3, padding=1)
        _glorot(self)

    FILE_KEY = "decoder"

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["n_voxels"], hp["size"], hp["lambda"], hp["mu"])

    @property
    def uses_attention(self) -> bool:
        return self.lam != 0.0

    def forward(self, fmri: torch.Tensor, fa: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(fmri).view(-1, self.c0, self.base, self.base)
        conv_f = self.conv_f(self.blocks(h))
        if self.uses_attention:
            if fa is None:
                raise ValueError("this decoder is guided by F-attention (λ ≠ 0) but got no map")
            fa = F.interpolate(fa, size=conv_f.shape[-2:], mode="bilinear", align_corners=False)
            feature = self.lam * fa * conv_f + self.mu * conv_f
        else:
            feature = self.mu * conv_f
        return torch.sigmoid(self.out(feature))


class SelfAttention2d(nn.Module):
    """softmax(Q Kᵀ) V over the spatial positions (paper 000 eq. 1, d_k = 1: no scaling), added
    back to the input with a learned gate that starts at 0 (as in SAGAN)."""

    def __init__(self, channels: int, qk: int = 8):
        super().__init__()
        self.q = nn.Conv2d(channels, qk, 1)
        self.k = nn.Conv2d(channels, qk, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x).flatten(2).transpose(1, 2)  # (B, N, qk)
        k = self.k(x).flatten(2)  # (B, qk, N)
        return torch.softmax(torch.bmm(q, k), dim=-1)  # (B, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        v = self.v(x).flatten(2)  # (B, C, N)
        out = torch.bmm(v, self.attention(x).transpose(1, 2)).view(b, c, h, w)
        return x + self.gamma * out


class AttentionDecoder(SavedNetwork, nn.Module):
    """Paper 000's F-attention decoder: dense → (C, s, s), transposed-conv upsampling (kernel 4,
    stride 2), self-attention, conv/upsampling to the map side, 1 channel, sigmoid."""

    def __init__(self, n_voxels: int, size: str = "tiny"):
        super().__init__()
        d = ATTENTION_SIZES[size]
        self.hparams = {"n_voxels": int(n_voxels), "size": size}
        self.d = d
        self.fc = nn.Linear(n_voxels, d["base_channels"] * d["base"] ** 2)
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(d["base_channels"], d["channels"], 4, stride=2, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(d["channels"]),
        )
        self.attn = SelfAttention2d(d["channels"], d["qk"])
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(d["channels"], d["channels"], 4, stride=2, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(d["channels"]),
        )
        self.out = nn.Conv2d(d["channels"], 1, 3, padding=1)
        _glorot(self)

    FILE_KEY = "attention_decoder"

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["n_voxels"], hp["size"])

    def forward(self, fmri: torch.Tensor) -> torch.Tensor:
        d = self.d
        h = self.fc(fmri).view(-1, d["base_channels"], d["base"], d["base"])
        h = self.up1(h)
        h = F.interpolate(h, size=(d["attn"],) * 2, mode="bilinear", align_corners=False)
        h = self.up2(self.attn(h))
        h = F.interpolate(h, size=(d["out"],) * 2, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.out(h))
