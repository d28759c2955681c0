"""A simulated subject: voxel geometry, receptive fields, tuning and noise.

Early areas (V1–V4) respond through retinotopic population receptive fields: each voxel pools
local contrast, orientation energy and colour-opponent maps under an isotropic Gaussian whose size
grows with eccentricity and from V1 to V4, followed by a compressive (square-root) nonlinearity.
Higher areas (LOC, FFA, PPA) respond to semantic features: pretrained EfficientNet-Lite features
and a per-category embedding (FFA/PPA more categorical than LOC). The scene areas OPA and RSC
(BOLD5000's ROIs) exist only when ``simulation.voxels`` lists them: they are placed after PPA and
draw after every other ROI, so a config without them gets the same voxels and numbers as before;
their semantic weights share one scene-network profile per area. Every voxel's signal is scaled
to unit variance over the training images, so ``noise_sd`` is noise sd per unit signal sd.
Trials add per-voxel Gaussian noise and per-run offsets and linear drifts; raw values get a
voxel-specific baseline and gain, like arbitrary-unit SPM data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

EARLY = ("V1", "V2", "V3", "V4")
HIGHER = ("LOC", "FFA", "PPA")
ROI_ORDER = EARLY + HIGHER
#: higher areas simulated only when ``simulation.voxels`` lists them, after ROI_ORDER (scene areas)
OPTIONAL = ("OPA", "RSC")
#: pRF sd (fraction of image width) = a + b * eccentricity, per early area
PRF_SIZE = {"V1": (0.025, 0.10), "V2": (0.035, 0.15), "V3": (0.05, 0.20), "V4": (0.07, 0.30)}
#: Dirichlet concentration over the 10 feature channels (lum, contrast, 4 orientations, 4 colour)
CHANNEL_PREF = {
    "V1": [1, 3, 3, 3, 3, 3, 0.5, 0.5, 0.5, 0.5],
    "V2": [1, 3, 2, 2, 2, 2, 1, 1, 1, 1],
    "V3": [1, 2, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5],
    "V4": [1, 1.5, 1, 1, 1, 1, 3, 3, 3, 3],
}
#: weight of the EfficientNet part vs the category part of the semantic signal
SEMANTIC_MIX = {"LOC": 0.75, "FFA": 0.4, "PPA": 0.4, "OPA": 0.6, "RSC": 0.5}
#: share of an optional area's semantic weights that is its common (network) profile
NETWORK_SHARE = 0.6
FEATURE_RES = 32  # feature maps are pooled at this resolution
#: per-channel scales that bring every channel's mean to about 0.3 on the procedural images
CHANNEL_SCALE = torch.tensor([0.65, 17.5, 580, 580, 580, 580, 5.5, 5.5, 5.5, 5.5])


@dataclass
class VoxelModel:
    """Everything needed to produce a subject's responses (all arrays indexed by voxel)."""

    roi: np.ndarray  # (V,) str
    ijk: np.ndarray  # (V, 3) int voxel indices in the label volume
    volume_shape: tuple[int, int, int]
    prf_xy: np.ndarray  # (V, 2) pRF centre, fraction of image width, NaN for higher areas
    prf_sigma: np.ndarray  # (V,) NaN for higher areas
    channel_w: np.ndarray  # (V, 10)
    semantic_w: np.ndarray  # (V, D_sem)
    category_w: np.ndarray  # (V, D_cat)
    noise_sd: np.ndarray  # (V,)
    baseline: np.ndarray  # (V,)
    gain: np.ndarray  # (V,)


def roi_order(counts: dict[str, int]) -> tuple[str, ...]:
    """The simulated ROIs in voxel order: ROI_ORDER, then the OPTIONAL ones ``counts`` lists."""
    return ROI_ORDER + tuple(name for name in OPTIONAL if counts.get(name))


def build_geometry(counts: dict[str, int], depth: int = 12, width: int = 10):
    """Place the ROIs as slabs along the posterior→anterior axis in two hemispheres.

    Returns (roi (V,), ijk (V, 3), hemisphere (V,) in {-1, +1}, volume shape).
    Voxels are ordered by ROI, then hemisphere, then position.
    """
    rois, ijk, hemi = [], [], []
    cursor = {-1: 0, 1: 0}  # next free linear slot per hemisphere
    for name in roi_order(counts):
        n = counts[name]
        for h, share in ((-1, n // 2), (1, n - n // 2)):
            for k in range(share):
                slot = cursor[h] + k
                y, rest = divmod(slot, width * depth)
                x, z = divmod(rest, depth)
                xi = (width - 1 - x) if h < 0 else (width + 2 + x)  # 2-voxel gap at the midline
                rois.append(name)
                ijk.append((xi, y, z))
                hemi.append(h)
            cursor[h] += share
    ijk = np.asarray(ijk, dtype=np.int64)
    shape = (2 * width + 2, int(ijk[:, 1].max()) + 1, depth)
    return np.asarray(rois), ijk, np.asarray(hemi), shape


def build_voxel_model(
    counts: dict[str, int], noise_sd: float, d_semantic: int, d_category: int, seed: int
) -> VoxelModel:
    rng = np.random.default_rng(seed)
    roi, ijk, hemi, shape = build_geometry(counts)
    n = len(roi)
    prf_xy = np.full((n, 2), np.nan)
    prf_sigma = np.full(n, np.nan)
    channel_w = np.zeros((n, 10))
    semantic_w = np.zeros((n, d_semantic))
    category_w = np.zeros((n, d_category))
    for name in roi_order(counts):
        idx = np.flatnonzero(roi == name)
        if name in EARLY:
            # retinotopy: dorsal/ventral position (z) -> polar angle, position within the
            # slab -> eccentricity (smooth maps, plus scatter); left hemisphere sees the right field
            z = ijk[idx, 2] / max(shape[2] - 1, 1)
            local = np.linspace(0, 1, len(idx)) if len(idx) > 1 else np.zeros(1)
            angle = (z - 0.5) * np.pi * 0.95 + rng.normal(0, 0.1, len(idx))
            ecc = 0.48 * np.clip(local**1.5 + rng.normal(0, 0.05, len(idx)), 0.01, 1.0)
            side = -hemi[idx]
            prf_xy[idx, 0] = side * ecc * np.cos(angle)
            prf_xy[idx, 1] = -ecc * np.sin(angle)
            a, b = PRF_SIZE[name]
            prf_sigma[idx] = (a + b * ecc) * np.exp(rng.normal(0, 0.1, len(idx)))
            channel_w[idx] = rng.dirichlet(CHANNEL_PREF[name], size=len(idx))
        elif name in OPTIONAL:  # a scene network: one profile per area shared by its voxels, plus their own
            mix, share = SEMANTIC_MIX[name], NETWORK_SHARE
            for w, d, scale in ((semantic_w, d_semantic, mix), (category_w, d_category, 1 - mix)):
                common = rng.normal(size=d)
                own = rng.normal(size=(len(idx), d))
                w[idx] = scale * (np.sqrt(share) * common + np.sqrt(1 - share) * own) / np.sqrt(d)
        else:
            mix = SEMANTIC_MIX[name]
            semantic_w[idx] = mix * rng.normal(size=(len(idx), d_semantic)) / np.sqrt(d_semantic)
            category_w[idx] = (1 - mix) * rng.normal(size=(len(idx), d_category)) / np.sqrt(
                d_category
            )
    return VoxelModel(
        roi=roi,
        ijk=ijk,
        volume_shape=shape,
        prf_xy=prf_xy,
        prf_sigma=prf_sigma,
        channel_w=channel_w,
        semantic_w=semantic_w,
        category_w=category_w,
        noise_sd=noise_sd * np.exp(rng.normal(0, 0.3, n)),
        baseline=rng.uniform(500, 1500, n),
        gain=rng.uniform(5, 20, n),
    )


def feature_maps(images: np.ndarray, chunk: int = 256) -> torch.Tensor:
    """Low-level feature maps of uint8 images (N, H, W, 3) → (N, 10, 32, 32), non-negative.

    Channels: luminance, local contrast, orientation energy at 0/45/90/135°, and the positive and
    negative parts of the red–green and blue–yellow opponent signals. Computed ``chunk`` images
    at a time to bound memory.
    """
    return torch.cat([_feature_maps(images[i : i + chunk]) for i in range(0, len(images), chunk)])


def _feature_maps(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    lum = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    blur = _gauss_blur(lum, 1.5)
    contrast = (lum - blur).abs()
    gy, gx = torch.gradient(_gauss_blur(lum, 0.7), dim=(2, 3))
    d1, d2 = (gx + gy) / np.sqrt(2), (gx - gy) / np.sqrt(2)
    orient = torch.cat([gx**2, d1**2, gy**2, d2**2], dim=1)
    rg = x[:, 0] - x[:, 1]
    by = x[:, 2] - 0.5 * (x[:, 0] + x[:, 1])
    colour = torch.stack([rg.clamp(min=0), (-rg).clamp(min=0), by.clamp(min=0), (-by).clamp(min=0)], 1)
    maps = torch.cat([lum, contrast, orient, colour], dim=1) * CHANNEL_SCALE.view(1, -1, 1, 1)
    return F.adaptive_avg_pool2d(maps, FEATURE_RES)


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def prf_weights(model: VoxelModel, res: int = FEATURE_RES) -> torch.Tensor:
    """Gaussian pRF weights (V_early, res*res), each summing to 1."""
    early = np.flatnonzero(~np.isnan(model.prf_sigma))
    c = (np.arange(res) + 0.5) / res - 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    dx = xx.ravel()[None] - model.prf_xy[early, 0:1]
    dy = yy.ravel()[None] - model.prf_xy[early, 1:2]
    g = np.exp(-(dx**2 + dy**2) / (2 * model.prf_sigma[early, None] ** 2))
    g /= g.sum(axis=1, keepdims=True)
    return torch.from_numpy(g).float()


def noise_free_drive(
    model: VoxelModel,
    maps: torch.Tensor,
    semantic: np.ndarray,
    category_embedding: np.ndarray,
) -> np.ndarray:
    """Unscaled noise-free responses (N, V) for feature maps (N, 10, R, R), semantic features
    (N, D_sem) and the category embedding of each image (N, D_cat)."""
    n_img = maps.shape[0]
    early = np.flatnonzero(~np.isnan(model.prf_sigma))
    higher = np.flatnonzero(np.isnan(model.prf_sigma))
    out = np.zeros((n_img, len(model.roi)), np.float64)
    g = prf_weights(model)  # (Ve, R*R)
    w = torch.from_numpy(model.channel_w[early]).float()  # (Ve, 10)
    flat = maps.reshape(n_img, maps.shape[1], -1)  # (N, 10, R*R)
    for start in range(0, n_img, 256):
        pooled = torch.einsum("ncp,vp->nvc", flat[start : start + 256], g)  # (n, Ve, 10)
        drive = (pooled * w).sum(-1)
        out[start : start + 256, early] = torch.sqrt(drive.clamp(min=0) + 1e-6).double().numpy()
    sem = semantic @ model.semantic_w[higher].T + category_embedding @ model.category_w[higher].T
    out[:, higher] = np.log1p(np.exp(sem))  # softplus: firing-rate-like rectification
    return out


def standardise(signal: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale each voxel's signal to zero mean and unit sd over the ``reference`` rows."""
    mu = reference.mean(axis=0)
    sd = reference.std(axis=0)
    sd[sd < 1e-9] = 1.0
    return (signal - mu) / sd
