"""Foreground-attention (F-attention) label maps, as paper 000 describes them.

Find the prominent object, binarise, clean up with morphology, weight foreground 1 and background 0.
The object finder is a class-activation map (CAM) of the pretrained EfficientNet-Lite0 classifier
(``fc.weight[top-1] · head features``); spectral-residual saliency (Hou & Zhang 2007) is the
fallback, used for every image (``method: saliency``) or only where the CAM mask is degenerate
(empty or covering almost the whole image). The soft variant blurs the cleaned mask with a
Gaussian (``soft_sigma`` px), so weights fall from 1 to 0 across the object's edge.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk


def cam_maps(images: np.ndarray, input_size: int = 224, batch_size: int = 16) -> np.ndarray:
    """CAM of the top-1 ImageNet class for uint8 images (N, H, W, 3) → float maps (N, H, W) in [0, 1]."""
    from ..features.efficientnet import load_efficientnet_lite, preprocess, to_tensor

    model = load_efficientnet_lite("lite0")
    h, w = images.shape[1:3]
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = preprocess(to_tensor(images[start : start + batch_size]), input_size)
            feats = model.extract_features(x)  # (B, 1280, 7, 7)
            logits = model._fc(feats.mean(dim=(2, 3)))
            weights = model._fc.weight[logits.argmax(1)]  # (B, 1280)
            cam = torch.einsum("bc,bchw->bhw", weights, feats).unsqueeze(1)
            cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            out.append(_minmax(cam.numpy()))
    return np.concatenate(out).astype(np.float32)


def saliency_maps(images: np.ndarray, sigma: float = 2.5, work_size: int = 64) -> np.ndarray:
    """Spectral-residual saliency of uint8 images (N, H, W, 3) → float maps (N, H, W) in [0, 1]."""
    from skimage.transform import resize

    out = []
    for img in images:
        grey = img.astype(np.float64).mean(-1) / 255.0
        small = resize(grey, (work_size, work_size), anti_aliasing=True)
        spec = np.fft.fft2(small)
        log_amp = np.log(np.abs(spec) + 1e-9)
        residual = log_amp - ndimage.uniform_filter(log_amp, size=3, mode="nearest")
        sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spec)))) ** 2
        sal = ndimage.gaussian_filter(sal, sigma)
        out.append(_minmax(resize(sal, img.shape[:2], anti_aliasing=False)[None])[0])
    return np.stack(out).astype(np.float32)


def _minmax(maps: np.ndarray) -> np.ndarray:
    lo = maps.reshape(len(maps), -1).min(1)[:, None, None]
    hi = maps.reshape(len(maps), -1).max(1)[:, None, None]
    return (maps - lo) / np.maximum(hi - lo, 1e-12)


def binarise(obj: np.ndarray, opening: int = 1, closing: int = 2, min_fraction: float = 0.01) -> np.ndarray:
    """Otsu threshold, opening then closing with disks, holes filled, largest component kept."""
    if np.ptp(obj) < 1e-6:
        return np.zeros(obj.shape, bool)
    mask = obj > threshold_otsu(obj)
    if opening:
        mask = ndimage.binary_opening(mask, structure=disk(opening))
    if closing:
        mask = ndimage.binary_closing(mask, structure=disk(closing))
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    if mask.mean() < min_fraction:
        return np.zeros(obj.shape, bool)
    return mask


def _degenerate(mask: np.ndarray) -> bool:
    frac = mask.mean()
    return frac == 0.0 or frac > 0.9


def clean_mask(obj: np.ndarray, settings: dict) -> np.ndarray:
    """:func:`binarise` with the config's morphology settings."""
    return binarise(obj, settings["opening_radius"], settings["closing_radius"], settings["min_object_fraction"])


def label_maps(images: np.ndarray, settings: dict, saliency: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """F-attention maps (N, H, W) float32 in [0, 1] and a summary of how they were made.

    ``settings``: ``method`` (cam | saliency), ``soft``, ``fallback`` (saliency where CAM is
    degenerate), ``opening_radius``, ``closing_radius``, ``min_object_fraction``, ``cam_input_size``,
    ``soft_sigma``. ``saliency``: the images' :func:`saliency_maps`, when the caller has them.
    """
    if saliency is None and (settings["method"] == "saliency" or settings["fallback"]):
        saliency = saliency_maps(images)
    obj = cam_maps(images, settings["cam_input_size"]) if settings["method"] == "cam" else saliency
    maps, n_fallback = [], 0
    for i in range(len(images)):
        mask = clean_mask(obj[i], settings)
        if settings["method"] == "cam" and settings["fallback"] and _degenerate(mask):
            n_fallback += 1
            mask = clean_mask(saliency[i], settings)
        if settings["soft"]:
            soft = ndimage.gaussian_filter(mask.astype(np.float64), settings["soft_sigma"])
            maps.append(np.clip(soft, 0.0, 1.0).astype(np.float32))
        else:
            maps.append(mask.astype(np.float32))
    info = {"method": settings["method"], "soft": bool(settings["soft"]), "n_fallback": n_fallback}
    return np.stack(maps), info


def iou(maps: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-image intersection over union of ``maps > threshold`` and boolean ``truth``."""
    pred = maps > threshold
    truth = truth.astype(bool)
    inter = (pred & truth).reshape(len(pred), -1).sum(1)
    union = (pred | truth).reshape(len(pred), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
