"""Protocol specs and evaluation inputs: validation, result keys, the shuffled-control permutation.

See :mod:`fmrirecon.evaluate.protocols` for the metric names and their settings.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..features import DEFAULT_NETWORK

METRIC_NAMES = (
    "ssim",
    "pixcorr",
    "pairwise_ssim_2way",
    "identification",
    "semantic_nway_topk",
    "centroid_classification",
    "feature_correlation_distance",
    "perceptual_distance",
)
SAMPLE_MODES = ("first", "mean", "mean_and_max")
SIMILARITIES = ("ssim", "pixcorr", "mse", "feature_corr", "perceptual")


def spec_key(spec: dict) -> str:
    """The result key of one metric spec: its ``key``, else a name derived from its settings."""
    if spec.get("key"):
        return str(spec["key"])
    name = spec.get("name")
    if name == "identification":
        sim = spec.get("similarity", "ssim")
        extra = f"_{spec.get('network', DEFAULT_NETWORK)}_{spec.get('layer', 'pooled')}" if sim == "feature_corr" else ""
        return f"identification_{sim}{extra}_{spec.get('n_way', 2)}way"
    if name == "semantic_nway_topk":
        return f"semantic_{spec.get('n_way', 50)}way_top{spec.get('top_k', 1)}"
    return str(name)


def derived_keys(spec: dict) -> list[str]:
    """Every result key one metric spec produces (centroid sub-scores, ``_max`` variants)."""
    key = spec_key(spec)
    if spec.get("name") == "centroid_classification":
        keys = [f"{key}_rank"] + [f"{key}_top{k}" for k in spec.get("top_k", [1, 5])]
        keys += [f"{key}_{n}way_top1" for n in spec.get("n_way", [])]
    else:
        keys = [key]
    if spec.get("samples") == "mean_and_max":
        keys = [k for base in keys for k in (base, f"{base}_max")]
    return keys


def check_protocol(protocol: dict) -> None:
    """InputError unless every metric is known, well-formed and has a distinct result key."""
    if not isinstance(protocol, dict) or not isinstance(protocol.get("metrics"), list):
        raise InputError("a protocol must be a dict with a 'metrics' list")
    seen = set()
    for spec in protocol["metrics"]:
        if not isinstance(spec, dict) or spec.get("name") not in METRIC_NAMES:
            got = spec.get("name") if isinstance(spec, dict) else spec
            raise InputError(f"unknown metric '{got}' in protocol: expected one of {METRIC_NAMES}")
        if spec.get("samples", "first") not in SAMPLE_MODES:
            raise InputError(f"metric samples must be one of {SAMPLE_MODES}, got '{spec.get('samples')}'")
        if spec["name"] == "identification" and spec.get("similarity", "ssim") not in SIMILARITIES:
            raise InputError(f"unknown similarity '{spec.get('similarity')}': expected one of {SIMILARITIES}")
        for k in derived_keys(spec):
            if k in seen:
                raise InputError(f"metric key '{k}' appears twice in the protocol: give a distinct 'key'")
            seen.add(k)


def validate_inputs(recon, truth, gallery) -> tuple[np.ndarray, np.ndarray]:
    """Check the images (and gallery); reconstructions come back as ``(N, S, H, W, 3)``."""
    for name, a in (("recon", recon), ("truth", truth)):
        if not isinstance(a, np.ndarray):
            raise InputError(f"{name} must be a numpy array, got {type(a).__name__}")
        if a.dtype != np.uint8:
            raise InputError(f"{name} images must be uint8, got {a.dtype}")
    if truth.ndim != 4 or truth.shape[-1] != 3:
        raise InputError(f"truth must be (N, H, W, 3), got {truth.shape}")
    if recon.ndim == 4:
        recon = recon[:, None]
    if recon.ndim != 5 or recon.shape[-1] != 3:
        raise InputError(f"recon must be (N, H, W, 3) or (N, S, H, W, 3), got {recon.shape}")
    if recon.shape[0] != truth.shape[0]:
        raise InputError(f"recon has {recon.shape[0]} images but truth has {truth.shape[0]}: they must be aligned")
    if recon.shape[0] < 2:
        raise InputError("evaluation needs at least 2 images")
    if gallery is not None:
        _validate_gallery(gallery, truth)
    return recon, truth


def _validate_gallery(gallery, truth: np.ndarray) -> None:
    need = ("images", "category", "true_category")
    if not isinstance(gallery, dict) or any(k not in gallery for k in need):
        raise InputError(f"gallery must be a dict with keys {need}")
    g = gallery["images"]
    if not isinstance(g, np.ndarray) or g.dtype != np.uint8 or g.ndim != 4 or g.shape[-1] != 3:
        raise InputError(f"gallery images must be uint8 (M, H, W, 3), got {getattr(g, 'shape', g)}")
    cat = np.asarray(gallery["category"])
    if cat.shape != (g.shape[0],) or not np.issubdtype(cat.dtype, np.integer):
        raise InputError(f"gallery category must be int (M,) = ({g.shape[0]},), got {cat.dtype} {cat.shape}")
    tc = np.asarray(gallery["true_category"])
    if tc.shape != (truth.shape[0],) or not np.issubdtype(tc.dtype, np.integer):
        raise InputError(f"gallery true_category must be int (N,) = ({truth.shape[0]},), got {tc.shape}")
    missing = sorted(set(tc.tolist()) - set(cat.tolist()))
    if missing:
        raise InputError(f"true categories {missing[:5]} have no gallery images")


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded random permutation of ``range(n)`` with no fixed point (n >= 2)."""
    if n < 2:
        raise InputError("a shuffled control needs at least 2 images")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p
