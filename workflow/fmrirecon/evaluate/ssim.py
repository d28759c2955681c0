"""Batched SSIM in torch that reproduces ``skimage.metrics.structural_similarity``.

Every setting of the scikit-image function is explicit here (window, Gaussian sigma, data range,
sample covariance, K1/K2), plus the two preprocessing choices the papers differ on: grey
(skimage ``rgb2gray`` weights) or per-channel RGB mean (skimage ``channel_axis=-1``), and the
resolution the images are resized to first. The recipe of the NSD papers (MindEye, Brain-Diffuser)
is :data:`NSD_SSIM`: grey, Gaussian sigma 1.5, data range 1, no sample covariance, 425 px.

How the skimage numbers are reproduced:

* Gaussian weights use scipy's kernel (``truncate=3.5``, radius ``int(3.5 * sigma + 0.5)``, so an
  11-tap window at sigma 1.5); uniform weights are ``win_size`` taps of ``1 / win_size``.
* Filtering is separable and "valid" over the region skimage keeps after cropping
  ``(win_size - 1) // 2`` pixels from each edge; where the filter reaches past the image
  (a Gaussian window wider than ``win_size``) the image is padded the way scipy's ``mode='reflect'``
  does (half-sample symmetric), so the cropped values are identical.
* Images are divided by ``data_range`` first (SSIM is invariant to that when C1, C2 scale with it),
  which keeps float32 accurate; results match skimage's float64 to well under 1e-4.

Shapes: images are float tensors ``(N, C, H, W)`` with C = 1 (grey) or 3 (RGB); per-pair SSIM is
the mean over channels of each channel's cropped SSIM map, as skimage does with ``channel_axis``.

The pairwise matrix (every reconstruction against every image, for 2-way identification) reuses
per-image local means and variances (computed once per image: in torch, or by the C kernel in the
same order); only the cross term ``filter(x * y)`` and the SSIM formula are computed per pair.
Three interchangeable backends do that (:mod:`.ssim_backends`): plain torch ops in blocks (any
device; the GPU path), a fused ``torch.compile`` kernel (CPU), and a small C kernel
(``ssim_kernel.c``; CPU; blocks of 8 rows: a register-blocked vertical pass on the products, an
in-register transpose, an aligned symmetry-folded horizontal pass fused with the SSIM formula;
tiles of pairs reused from cache, OpenMP over tiles) built with the system C compiler at first
use and cached safely (:mod:`.ssim_native`). ``backend="auto"`` picks the C kernel on CPU for
large jobs and falls back in that order if a backend cannot be built; all three agree with each
other to ~1e-7.

Module layout: settings, filtering and the SSIM formula in :mod:`.ssim_core`; the pairwise
backends in :mod:`.ssim_backends`; the C kernel's build and cache in :mod:`.ssim_native`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from . import ssim_backends as B
from .presets import NSD_SSIM, SKIMAGE_DEFAULT_RGB_SSIM  # noqa: F401  (re-exported)
from .ssim_core import Plan, check_pair, filt, filter_taps, ssim_settings, ssim_tail

#: skimage.color.rgb2gray weights (ITU-R 709 luma as skimage defines it).
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)

#: Pairwise SSIM backends: a C kernel built at first use (CPU), torch.compile (CPU), plain torch.
BACKENDS = ("auto", "native", "compiled", "eager")


# --------------------------------------------------------------------------------------------
# image preparation


def prepare_images(
    images: np.ndarray | torch.Tensor,
    *,
    resolution: int | None = None,
    grey: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` → float ``(N, C, R, R)`` in [0, 1], C = 1 when ``grey`` else 3.

    Resizing (when ``resolution`` is set and differs) is bilinear with antialiasing
    (``align_corners=False``), applied before the grey conversion, as MindEye does.
    A float tensor ``(N, 3, H, W)`` in [0, 1] is accepted too.
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise InputError(f"expected uint8 images, got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"expected images of shape (N, H, W, 3), got {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device)
        x = x.permute(0, 3, 1, 2).to(dtype) / 255.0
    else:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise InputError(f"expected a float tensor (N, 3, H, W), got {tuple(images.shape)}")
        x = images.to(device=device, dtype=dtype)
    if resolution and (x.shape[-2] != resolution or x.shape[-1] != resolution):
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
    if grey:
        w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * w).sum(dim=1, keepdim=True)
    return x.contiguous()


# --------------------------------------------------------------------------------------------
# public API


def ssim(
    x: torch.Tensor, y: torch.Tensor, settings: dict | None = None, *, chunk_size: int = 32, **kw
) -> torch.Tensor:
    """SSIM of each aligned pair: x, y float ``(N, C, H, W)`` → ``(N,)`` (float64 tensor).

    ``settings``/keywords: see :func:`ssim_settings` (``resolution`` and ``grey`` are ignored here:
    prepare the images with :func:`prepare_images`). Equals
    ``structural_similarity(x[i, 0], y[i, 0], ...)`` (grey) or
    ``structural_similarity(x[i].permute(1, 2, 0), ..., channel_axis=-1)`` (RGB).
    """
    check_pair(x, y, same_n=True)
    plan = Plan({**(settings or {}), **kw}, (x.shape[-2], x.shape[-1]))
    out = []
    with torch.inference_mode():
        for s in range(0, x.shape[0], chunk_size):
            xr = plan.region(x[s : s + chunk_size])
            yr = plan.region(y[s : s + chunk_size])
            ux, vx = plan.stats(xr)
            uy, vy = plan.stats(yr)
            f = filt(xr * yr, plan.taps)
            out.append(ssim_tail(f, ux, uy, vx, vy, plan.C1, plan.C2, plan.cov_norm))
    return torch.cat(out).double()


def pairwise_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    settings: dict | None = None,
    *,
    backend: str = "auto",
    chunk: tuple[int, int] | None = None,
    info: dict | None = None,
    **kw,
) -> torch.Tensor:
    """SSIM of every x against every y: x ``(N, C, H, W)``, y ``(M, C, H, W)`` → ``(N, M)`` float64.

    Entry ``[i, j]`` is ``SSIM(x[i], y[j])`` with x as skimage's ``im1``. Local means and variances
    are computed once per image; only ``filter(x_i * y_j)`` is computed per pair. ``chunk``: block
    shape (eager: ``(rows of x, rows of y)``; compiled: ``chunk[1]`` images per call; native: the
    tile of ``(reconstructions, images)`` a thread takes, default 16 x 16). Memory: the per-image
    statistics (input region, mean, variance) in float32, about 2.1 MB per 425 px grey image —
    4.2 GB for N = M = 982 on the native/compiled paths (the eager path keeps only y's, plus
    ~256 MB of work space per block).

    ``backend``: ``"eager"`` (plain torch ops on the tensors' device — the GPU path),
    ``"native"`` (CPU: a small C kernel, OpenMP over tiles of pairs, compiled with the system C
    compiler at first use), ``"compiled"`` (CPU: the same fused computation through
    ``torch.compile``) or ``"auto"`` (on CPU above ~2e7 pair-pixels: native, else compiled, else
    eager; eager otherwise).
    ``info``, when given, receives ``{"backend": <the one used>}``.
    """
    check_pair(x, y, same_n=False)
    if backend not in BACKENDS:
        raise InputError(f"unknown SSIM backend '{backend}': expected one of {BACKENDS}")
    plan = Plan({**(settings or {}), **kw}, (x.shape[-2], x.shape[-1]))
    n, m, c = x.shape[0], y.shape[0], x.shape[1]
    work = n * m * c * (x.shape[-2] - 2 * plan.crop) * (x.shape[-1] - 2 * plan.crop)
    on_cpu = x.device.type == "cpu" and y.device.type == "cpu"
    if backend in ("native", "compiled") and not on_cpu:
        raise InputError(f"SSIM backend '{backend}' runs on CPU tensors only; use 'eager' on {x.device}")
    candidates = [backend]
    if backend == "auto":
        candidates = (["native", "compiled"] if on_cpu and work > 2e7 else []) + ["eager"]
    out, use = None, "eager"
    with torch.inference_mode():
        for use in candidates:
            try:
                if use == "native":
                    out = B.pairwise_native(x, y, plan, tile=tuple(chunk or B.NATIVE_TILE))
                elif use == "compiled":
                    kernel = B.compiled_kernel(plan.taps, plan.C1, plan.C2, plan.cov_norm)
                    if kernel is None:
                        raise InputError("torch.compile is unavailable here")
                    out = B.pairwise_compiled(x, y, plan, kernel, bj=(chunk or (1, 8))[1])
                else:
                    per_pair = c * (x.shape[-2] + 2 * plan.radius) * (x.shape[-1] + 2 * plan.radius) * 4 * 5
                    bi, bj = chunk or (1, max(1, min(m, int(256e6 // per_pair))))
                    out = B.pairwise_eager(x, y, plan, bi, bj)
                break
            except Exception as exc:  # a backend failed to build here: try the next one
                if backend != "auto" or use == "eager":
                    raise
                warnings.warn(f"SSIM backend '{use}' unavailable ({type(exc).__name__}: {exc}); falling back")
    if info is not None:
        info["backend"] = use
    return out


__all__ = [
    "BACKENDS",
    "GREY_WEIGHTS",
    "NSD_SSIM",
    "SKIMAGE_DEFAULT_RGB_SSIM",
    "filter_taps",
    "pairwise_ssim",
    "prepare_images",
    "ssim",
    "ssim_settings",
]
