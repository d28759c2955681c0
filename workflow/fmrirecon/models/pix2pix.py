"""Paper 004's image decoder: pix2pix (Isola et al. 2017) from fMRI laid out as a 2-D map.

What is public: the paper (§III.D) names a U-Net generator with skips, BatchNorm and ReLU, a
PatchGAN discriminator (``4×4`` kernels on a zero-padded ``33×33`` map, stride 1, ``30×30``
output for 256-px images, threshold 0.5), the L1 + cGAN objective, Adam 2e-4 with β1 = 0.5, min–max
scaled inputs, and random jitter (enlarge 256 → 288, random crop back to 256). That matches the
TensorFlow pix2pix tutorial layer for layer. Their GAN notebook (``project_gan.ipynb`` in
``A-Ariyanuchitkul/G20_ML2023``) is not in the public history (its blob is missing from every
snapshot), so the sizes below are pix2pix's:

- generator: encoder C64-C128-C256-C512-C512-C512-C512-C512 (4×4 convs, stride 2, BatchNorm except
  on the first and the innermost layer — the authors' PyTorch code; the TF tutorial also norms the
  innermost 1×1 map, which fails for a batch of 1), LeakyReLU 0.2; decoder CD512-CD512-CD512-C512-
  C256-C128-C64 (4×4 transposed convs, BatchNorm, dropout 0.5 in the first three, ReLU), each
  output concatenated with the encoder map of the same size; a last transposed conv to RGB and
  ``tanh`` (images in [-1, 1]: map with ``(y + 1) / 2``). Weights N(0, 0.02); as in the authors'
  code only the last layer has a bias (54.414 M parameters for RGB → RGB at 256 px).
- discriminator (70×70 PatchGAN, conditional): input and image concatenated on channels,
  C64 (no norm) - C128 - C256 (stride 2), C512 (stride 1), a 1-channel conv (stride 1): for 256 px
  256 → 128 → 64 → 32 → 31 → 30, each output a logit for a 70×70 patch (biases on the first and
  the last conv, as the authors' code: 2.769 M parameters for RGB pairs).

The fMRI input layout is not public either. The one layout in their code (the earlier "image
reconstruction attempt" cells of ``project_classification.ipynb``, commit 05921d9, cell 71): both
hemispheres zero-padded to 21025 = 145² vertices, min–max scaled, and each reshaped row-major to
145 × 145 — a 2-channel map (channel 0 left, channel 1 right). :func:`fmri_map` builds it (any
square side); :func:`resize_map` brings it to the generator's side (256 for ``paper``), and
:func:`random_jitter` enlarges and crops it during training. The map has no spatial meaning
(neighbouring pixels are vertices with neighbouring indices), which the paper's weak scores
(PixCorr 0.010) reflect.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import SavedNetwork
from .category_classifier import hemisphere_channels

SIZES = {
    # image: the generator's side; channels: encoder widths (one stride-2 level each, so the
    # innermost map is image / 2^len); d_channels: PatchGAN widths (all but the last stride 2);
    # dropout: decoder levels with dropout 0.5; load: the side random jitter enlarges to
    "tiny": {"image": 32, "channels": (16, 32, 64, 64, 64), "d_channels": (16, 32, 64), "dropout": 3, "load": 36},
    "paper": {"image": 256, "channels": (64, 128, 256, 512, 512, 512, 512, 512), "d_channels": (64, 128, 256, 512),
              "dropout": 3, "load": 288},
}  # fmt: skip

#: their fit_fmri_target_size = 21025 = 145²: the map side of the Algonauts-2023 layout
ALGONAUTS_SIDE = 145


def _size(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"pix2pix size {size!r}: expected one of {sorted(SIZES)}")
    return SIZES[size]


def _init_weights(module: nn.Module) -> None:
    """The pix2pix initialisation: conv weights N(0, 0.02), biases 0 (BatchNorm: γ = 1, β = 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _down(c_in: int, c_out: int, norm: bool, bias: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=bias)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers, nn.LeakyReLU(0.2))


def _up(c_in: int, c_out: int, dropout: bool) -> nn.Sequential:
    layers = [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out)]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers, nn.ReLU())


class UNetGenerator(SavedNetwork, nn.Module):
    """(B, in_channels, S, S) map → (B, out_channels, S, S) image in [-1, 1] (``tanh``).

    ``S`` must be a multiple of 2^depth (depth = number of encoder levels; ``paper``: 256 → 1×1).
    """

    FILE_KEY = "generator"

    def __init__(self, in_channels: int = 2, out_channels: int = 3, size: str = "tiny"):
        super().__init__()
        d = _size(size)
        self.hparams = {"in_channels": int(in_channels), "out_channels": int(out_channels), "size": size}
        ch = d["channels"]
        self.depth = len(ch)
        self.down = nn.ModuleList(
            _down(in_channels if i == 0 else ch[i - 1], c, norm=0 < i < len(ch) - 1) for i, c in enumerate(ch)
        )
        up, c_in = [], ch[-1]
        for i, c in enumerate(reversed(ch[:-1])):  # mirror of the encoder below the innermost level
            up.append(_up(c_in, c, dropout=i < d["dropout"]))
            c_in = 2 * c  # concatenated with the encoder map of the same side
        self.up = nn.ModuleList(up)
        self.last = nn.ConvTranspose2d(c_in, out_channels, 4, stride=2, padding=1)
        _init_weights(self)

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["in_channels"], hp["out_channels"], hp["size"])

    def forward(self, x: torch.Tensor, return_skips: bool = False):
        """The image; with ``return_skips`` also the encoder maps (shallow to innermost) and the
        decoder maps after each concatenation (innermost to shallow)."""
        c = self.hparams["in_channels"]
        step = 2**self.depth
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] != x.shape[3] or x.shape[2] % step:
            raise ValueError(f"pix2pix generator: expected a square map (B, {c}, S, S) with S a multiple of "
                             f"{step}, got {tuple(x.shape)}")  # fmt: skip
        encoded, h = [], x
        for block in self.down:
            h = block(h)
            encoded.append(h)
        decoded = []
        for block, skip in zip(self.up, reversed(encoded[:-1])):
            h = torch.cat([block(h), skip], dim=1)
            decoded.append(h)
        out = torch.tanh(self.last(h))
        return (out, encoded, decoded) if return_skips else out


class PatchDiscriminator(SavedNetwork, nn.Module):
    """Conditional PatchGAN: (map (B, C_in, S, S), image (B, C_out, S, S)) → (B, 1, P, P) logits.

    ``paper`` (70×70 patches): P = 30 for S = 256. The map and the image are concatenated on
    channels, as pix2pix's discriminator sees (input, target) pairs.
    """

    FILE_KEY = "discriminator"

    def __init__(self, in_channels: int = 2, image_channels: int = 3, size: str = "tiny"):
        super().__init__()
        d = _size(size)
        self.hparams = {"in_channels": int(in_channels), "image_channels": int(image_channels), "size": size}
        ch = d["d_channels"]
        layers = [_down(in_channels + image_channels, ch[0], norm=False, bias=True)]
        layers += [_down(a, b, norm=True) for a, b in pairwise(ch[:-1])]
        # stride 1 on a zero-padded map (the paper's "33×33"), then one logit per patch
        layers += [nn.Conv2d(ch[-2], ch[-1], 4, stride=1, padding=1, bias=False), nn.BatchNorm2d(ch[-1]),
                   nn.LeakyReLU(0.2), nn.Conv2d(ch[-1], 1, 4, stride=1, padding=1)]  # fmt: skip
        self.net = nn.Sequential(*layers)
        _init_weights(self)

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["in_channels"], hp["image_channels"], hp["size"])

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if condition.shape[0] != image.shape[0] or condition.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"pix2pix discriminator: map {tuple(condition.shape)} and image {tuple(image.shape)} "
                             "must share batch size and side")  # fmt: skip
        return self.net(torch.cat([condition, image], dim=1))


# -- the fMRI map --------------------------------------------------------------------------------
def square_side(n_vertices: int) -> int:
    """The smallest square side holding ``n_vertices`` (their Algonauts value is 145, one larger)."""
    return math.isqrt(max(int(n_vertices) - 1, 0)) + 1


def fmri_map(left: np.ndarray, right: np.ndarray, side: int | None = None, scale: bool = True) -> np.ndarray:
    """Left (N, V_l) and right (N, V_r) vertex vectors → (N, 2, side, side) float32.

    Each hemisphere is zero-padded to side² (default: the smallest square holding the larger
    hemisphere; :data:`ALGONAUTS_SIDE` reproduces their 145), min–max scaled over its whole array
    (``scale``, padding included, as their code) and reshaped row-major: pixel (i, j) of channel h
    is vertex ``i·side + j`` of hemisphere h, zero beyond the hemisphere's last vertex.
    """
    side = square_side(max(np.shape(left)[1], np.shape(right)[1])) if side is None else int(side)
    flat = hemisphere_channels(left, right, side * side, scale=scale)
    return flat.reshape(len(flat), 2, side, side)


def resize_map(maps: torch.Tensor, size: int, mode: str = "nearest") -> torch.Tensor:
    """(B, C, s, s) → (B, C, size, size); ``nearest`` as the pix2pix tutorial's jitter resize."""
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(maps, size=(size, size), mode=mode, align_corners=False)
    return F.interpolate(maps, size=(size, size), mode=mode)


def random_jitter(*tensors: torch.Tensor, generator: torch.Generator, load_size: int, mirror: bool = False,
                  mode: str = "nearest") -> tuple[torch.Tensor, ...]:  # fmt: skip
    """The pix2pix random jitter: resize (B, C, S, S) tensors to ``load_size``, crop a random S × S
    window per sample and (``mirror``) flip it left-right with probability 1/2.

    Every tensor gets the same window and flip per sample (pass the map and the image together to
    keep a pair aligned, as the pix2pix tutorial does). The draws come from ``generator`` only, in
    a fixed order (rows, columns, flips), so a seed fixes the result. The paper describes resize
    and crop (256 → 288 → 256); the tutorial also mirrors (``mirror=True``) — whether their code
    did is not public. An fMRI map flipped left-right is a different vertex order.
    """
    if not tensors:
        raise ValueError("random_jitter: no tensors given")
    b, side = tensors[0].shape[0], tensors[0].shape[-1]
    for t in tensors:
        if t.ndim != 4 or t.shape[0] != b or t.shape[-2] != side or t.shape[-1] != side:
            raise ValueError(f"random_jitter: expected square (B, C, S, S) tensors of one B and S, got "
                             f"{[tuple(t.shape) for t in tensors]}")  # fmt: skip
    if load_size < side:
        raise ValueError(f"random_jitter: load_size {load_size} is smaller than the side {side}")
    span = load_size - side + 1
    rows = torch.randint(0, span, (b,), generator=generator)
    cols = torch.randint(0, span, (b,), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5 if mirror else torch.zeros(b, dtype=torch.bool)
    out = []
    for t in tensors:
        big = resize_map(t, load_size, mode)
        crops = [big[i, :, r : r + side, c : c + side] for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))]
        crops = [x.flip(-1) if f else x for x, f in zip(crops, flips.tolist())]
        out.append(torch.stack(crops))
    return tuple(out)
