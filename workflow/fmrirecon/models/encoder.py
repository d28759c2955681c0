"""Image → fMRI encoder of paper 002 (also the pretrained encoder of paper 000's Loop-Enc-Dec).

Multi-level features of a frozen pretrained backbone are reduced per branch (BN, 3×3 conv, ReLU,
subsampling, BN) and read out per voxel by the *separable space-feature locally-connected layer*:
for every branch, each voxel has a spatial weight map over the branch's grid (its receptive field,
kept local by a total-variation penalty) and a weight per channel of the 3×3-neighbourhood-stacked
features. The branch outputs are combined per voxel with non-negative, 1-initialised weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import SavedNetwork

from .backbone import LEVELS, Backbone

SIZES = {
    # input_size: backbone input side; channels: per-branch conv width; grid: max readout grid side
    "tiny": {"input_size": 64, "channels": 16, "grid": 8},
    "paper": {"input_size": 112, "channels": 32, "grid": 28},
}


class SpaceFeatureReadout(nn.Module):
    """Per-voxel separable readout of one branch: spatial map (V, h, w) then channel weights (V, 9C)."""

    def __init__(self, n_voxels: int, channels: int, grid: int):
        super().__init__()
        k = channels * 9
        self.spatial = nn.Parameter(torch.empty(n_voxels, grid * grid))
        self.channel = nn.Parameter(torch.empty(n_voxels, k))
        nn.init.normal_(self.spatial, std=(2.0 / (grid * grid + 1)) ** 0.5)  # Glorot normal
        # channel weights start at 0 (predictions start at the voxel mean, z = 0) and learn first;
        # Glorot-normal channel weights start with outputs of variance ~9C and a slow first epoch
        nn.init.zeros_(self.channel)
        self.grid = grid

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        stacked = F.unfold(f, kernel_size=3, padding=1)  # (B, 9C, h*w): 3×3 neighbours stacked
        # Σ_k Σ_p x[k,p]·spatial[v,p]·channel[v,k], contracted over the channels first: the
        # (B, h*w, V) intermediate is smaller than (B, 9C, V) since h*w ≤ 64 < 9C on our grids
        per_location = torch.matmul(stacked.transpose(1, 2), self.channel.t())  # (B, h*w, V)
        return (per_location * self.spatial.t().unsqueeze(0)).sum(1)  # (B, V)

    def tv(self) -> torch.Tensor:
        m = self.spatial.view(-1, self.grid, self.grid)
        return (m[:, 1:] - m[:, :-1]).abs().mean() + (m[:, :, 1:] - m[:, :, :-1]).abs().mean()


class Branch(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, size_in: int, grid: int):
        super().__init__()
        self.out_size = min(size_in, grid)
        self.net = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(self.out_size),  # the ×2 (or more) subsampling to the grid
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x):
        return self.net(x)


class ImageEncoder(SavedNetwork, nn.Module):
    """``E(images in [0,1], (B,3,H,W)) -> (B, V)`` predicted (z-scored) voxel responses."""

    def __init__(self, n_voxels: int, size: str = "tiny", backbone: str = "efficientnet-lite0",
                 weights_dir: str = ""):  # fmt: skip
        super().__init__()
        dims = SIZES[size]
        self.hparams = {"n_voxels": int(n_voxels), "size": size, "backbone": backbone}
        bb = Backbone(backbone, dims["input_size"], weights_dir)
        object.__setattr__(self, "backbone", bb)  # frozen, not part of the saved weights
        self.levels = LEVELS[backbone]["blocks"]
        with torch.no_grad():
            probe = bb(torch.zeros(1, 3, dims["input_size"], dims["input_size"]), self.levels)
        self.branches = nn.ModuleList(
            Branch(p.shape[1], dims["channels"], p.shape[-1], dims["grid"]) for p in probe
        )
        self.readouts = nn.ModuleList(
            SpaceFeatureReadout(n_voxels, dims["channels"], br.out_size) for br in self.branches
        )
        self.combine = nn.Parameter(torch.ones(n_voxels, len(self.branches)))  # ≥ 0, 1-initialised
        self.bias = nn.Parameter(torch.zeros(n_voxels))

    FILE_KEY = "encoder"

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["n_voxels"], hp["size"], hp["backbone"], hp.get("weights_dir", ""))

    def to(self, *args, **kwargs):
        self.backbone.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def backbone_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(images, self.levels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.backbone_features(images))

    def from_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The trainable part on precomputed backbone features (fixed images, no augmentation)."""
        outs = [ro(br(f)) for f, br, ro in zip(feats, self.branches, self.readouts)]
        stacked = torch.stack(outs, -1)  # (B, V, n_branches)
        return (stacked * self.combine.clamp(min=0)).sum(-1) + self.bias

    def tv(self) -> torch.Tensor:
        return sum(ro.tv() for ro in self.readouts) / len(self.readouts)


def random_shift(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ±``max_shift`` px (edge-replicated): center-fixation jitter."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offs = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=gen)
    rows = (offs[:, :1] + torch.arange(h)).to(images.device)  # (B, h) source rows per image
    cols = (offs[:, 1:] + torch.arange(w)).to(images.device)  # (B, w)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
