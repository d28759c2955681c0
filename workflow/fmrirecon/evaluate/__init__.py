"""Evaluation: metrics, statistics and per-paper protocols.

* :mod:`.ssim` — batched torch SSIM matching scikit-image, pairwise SSIM matrices.
* :mod:`.metrics` — PixCorr, n-way identification, pairwise-SSIM 2-way, n-way top-k semantic
  accuracy, class-centroid classification, feature correlation and perceptual distances.
* :mod:`.stats` — bootstrap CIs over images, paired Wilcoxon tests.
* :mod:`.features` — feature-network registry (EfficientNet-Lite0 offline; others from local files).
* :mod:`.protocols` — :data:`DEFAULT_PROTOCOLS` presets, :func:`evaluate_protocol`,
  :func:`shuffled_control`, :func:`metric_keys`.
"""

from .protocols import (
    DEFAULT_PROTOCOLS,
    derangement,
    evaluate_protocol,
    get_protocol,
    metric_keys,
    network_availability,
    shuffled_control,
)
from .stats import bootstrap_ci, compare_methods, paired_wilcoxon

__all__ = [
    "DEFAULT_PROTOCOLS",
    "bootstrap_ci",
    "compare_methods",
    "derangement",
    "evaluate_protocol",
    "get_protocol",
    "metric_keys",
    "network_availability",
    "paired_wilcoxon",
    "shuffled_control",
]
