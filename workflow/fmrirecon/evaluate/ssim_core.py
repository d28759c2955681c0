"""SSIM settings and the shared arithmetic of every SSIM path (aligned pairs and all backends).

:func:`ssim_settings` completes and validates a configuration; :class:`Plan` turns it into the
constants for one image size (filter taps, crop, C1/C2, covariance normalisation) and computes the
per-image local statistics; :func:`filt` is the separable "valid" filter and :func:`ssim_tail` the
SSIM formula given the filtered cross term. See :mod:`fmrirecon.evaluate.ssim` for how these
reproduce scikit-image.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError

#: Gaussian truncation used by skimage's SSIM (an 11-tap window at sigma 1.5).
TRUNCATE = 3.5


def ssim_settings(settings: dict | None = None, **overrides) -> dict:
    """Complete, validated SSIM settings (defaults: the NSD recipe without a resize).

    Keys: ``resolution`` (px, square; 0 or absent = keep the images' size), ``grey`` (bool),
    ``gaussian_weights`` (bool), ``sigma`` (float), ``win_size`` (odd int; default 11 for Gaussian
    weights at sigma 1.5 — i.e. ``2 * int(3.5 * sigma + 0.5) + 1`` — and 7 for uniform weights),
    ``data_range`` (float, in the units of ``pixel_scale``), ``pixel_scale`` (1: pixels in [0, 1];
    255: pixels in [0, 255] as with uint8 arrays), ``use_sample_covariance`` (bool), ``K1``, ``K2``.
    Unknown keys are ignored so a metric spec can be passed as is.
    """
    merged = dict(settings or {})
    merged.update(overrides)
    out = {
        "resolution": int(merged.get("resolution") or 0),
        "grey": bool(merged.get("grey", True)),
        "gaussian_weights": bool(merged.get("gaussian_weights", True)),
        "sigma": float(merged.get("sigma", 1.5)),
        "data_range": float(merged.get("data_range", 1.0)),
        "pixel_scale": float(merged.get("pixel_scale", 1)),
        "use_sample_covariance": bool(merged.get("use_sample_covariance", False)),
        "K1": float(merged.get("K1", 0.01)),
        "K2": float(merged.get("K2", 0.03)),
    }
    if out["pixel_scale"] not in (1.0, 255.0):
        raise InputError(f"SSIM pixel_scale must be 1 or 255, got {merged.get('pixel_scale')}")
    if out["sigma"] <= 0:
        raise InputError(f"SSIM sigma must be positive, got {out['sigma']}")
    if out["data_range"] <= 0:
        raise InputError(f"SSIM data_range must be positive, got {out['data_range']}")
    win = merged.get("win_size")
    if win is None or win == 0:
        win = 2 * int(TRUNCATE * out["sigma"] + 0.5) + 1 if out["gaussian_weights"] else 7
    win = int(win)
    if win < 3 or win % 2 == 0:
        raise InputError(f"SSIM win_size must be an odd integer >= 3, got {win}")
    out["win_size"] = win
    out["pixel_scale"] = int(out["pixel_scale"])
    return out


def filter_taps(gaussian_weights: bool, sigma: float, win_size: int) -> tuple[float, ...]:
    """1-D filter taps as scipy applies them: Gaussian (truncate 3.5) or uniform of ``win_size``."""
    if gaussian_weights:
        radius = int(TRUNCATE * sigma + 0.5)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        phi = np.exp(-0.5 / (sigma * sigma) * x**2)
        phi /= phi.sum()
        return tuple(float(v) for v in phi)
    return tuple([1.0 / win_size] * win_size)


# --------------------------------------------------------------------------------------------
# filtering helpers


def _reflect_pad(x: torch.Tensor, e: int) -> torch.Tensor:
    """Pad the last two dims by ``e`` like scipy.ndimage ``mode='reflect'`` (d c b a | a b c d)."""
    if e == 0:
        return x
    if e > x.shape[-1] or e > x.shape[-2]:
        raise InputError(f"SSIM filter radius needs {e} px of padding, more than the image size")
    x = torch.cat([x[..., :e].flip(-1), x, x[..., -e:].flip(-1)], dim=-1)
    return torch.cat([x[..., :e, :].flip(-2), x, x[..., -e:, :].flip(-2)], dim=-2)


def _region(x: torch.Tensor, radius: int, crop: int) -> torch.Tensor:
    """The input region the filter reads for every output pixel skimage keeps after cropping.

    ``x`` (..., H, W) → (..., H - 2*crop + 2*radius, W - 2*crop + 2*radius).
    """
    e = max(0, radius - crop)
    xp = _reflect_pad(x, e)
    s = crop - radius + e
    h = x.shape[-2] - 2 * crop + 2 * radius
    w = x.shape[-1] - 2 * crop + 2 * radius
    return xp[..., s : s + h, s : s + w]


def filt(z: torch.Tensor, taps: tuple[float, ...]) -> torch.Tensor:
    """Separable valid filtering of the last two dims: (..., h + K - 1, w + K - 1) → (..., h, w)."""
    k = len(taps)
    w = z.shape[-1] - k + 1
    out = z[..., 0:w] * taps[0]
    for b in range(1, k):
        out.add_(z[..., b : b + w], alpha=taps[b])
    h = out.shape[-2] - k + 1
    res = out[..., 0:h, :] * taps[0]
    for a in range(1, k):
        res.add_(out[..., a : a + h, :], alpha=taps[a])
    return res


class Plan:
    """Constants of one SSIM configuration for images of size (H, W)."""

    def __init__(self, settings: dict, shape: tuple[int, int]):
        s = ssim_settings(settings)
        self.settings = s
        self.win = s["win_size"]
        self.taps = filter_taps(s["gaussian_weights"], s["sigma"], self.win)
        self.radius = (len(self.taps) - 1) // 2
        self.crop = (self.win - 1) // 2
        h, w = shape
        if h < self.win or w < self.win:
            raise InputError(
                f"SSIM win_size {self.win} exceeds the image size {h}x{w}: "
                "use a smaller win_size or a larger resolution"
            )
        n_p = self.win**2
        self.cov_norm = n_p / (n_p - 1) if s["use_sample_covariance"] else 1.0
        # images are divided by the data range (in [0, 1] units), so C1, C2 use range 1
        self.scale = s["pixel_scale"] / s["data_range"]
        self.C1 = (s["K1"]) ** 2
        self.C2 = (s["K2"]) ** 2

    def region(self, x: torch.Tensor) -> torch.Tensor:
        return _region(x * self.scale if self.scale != 1.0 else x, self.radius, self.crop)

    def stats(self, xr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local mean and (co)variance-normalised variance over the kept region."""
        mu = filt(xr, self.taps)
        var = self.cov_norm * (filt(xr * xr, self.taps) - mu * mu)
        return mu, var


def ssim_tail(f, ux, uy, vx, vy, C1: float, C2: float, cov_norm: float) -> torch.Tensor:
    """Mean SSIM over the last three dims (channel, row, column) given the filtered cross term."""
    p = ux * uy
    num = (2.0 * p + C1) * (2.0 * cov_norm * (f - p) + C2)
    den = (ux * ux + uy * uy + C1) * (vx + vy + C2)
    return (num / den).mean(dim=(-3, -2, -1))


def check_pair(x: torch.Tensor, y: torch.Tensor, same_n: bool) -> None:
    """InputError unless x, y are float (N, C, H, W) tensors of one image shape (and N if asked)."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or not t.is_floating_point():
            raise InputError(f"SSIM expects float tensors (N, C, H, W); {name} is {_describe(t)}")
    if x.shape[1:] != y.shape[1:]:
        raise InputError(f"SSIM images differ in shape: {tuple(x.shape[1:])} vs {tuple(y.shape[1:])}")
    if same_n and x.shape[0] != y.shape[0]:
        raise InputError(f"SSIM needs as many reconstructions as images: {x.shape[0]} vs {y.shape[0]}")


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor {tuple(t.shape)} {t.dtype}"
    if isinstance(t, np.ndarray):
        return f"array {t.shape} {t.dtype}"
    return type(t).__name__
