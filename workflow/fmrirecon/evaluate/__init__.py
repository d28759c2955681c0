"""Evaluation: metrics, statistics and per-paper protocols.

* :mod:`.ssim` — batched torch SSIM matching scikit-image, pairwise SSIM matrices.
* :mod:`.metrics` — PixCorr, n-way identification, pairwise-SSIM 2-way, n-way top-k semantic
  accuracy, class-centroid classification, feature correlation and perceptual distances.
* :mod:`.stats` — bootstrap CIs over images, paired Wilcoxon tests.
* :mod:`.features` — feature-network registry (EfficientNet-Lite0 offline; others from local files).
* :mod:`.presets` — :data:`DEFAULT_PROTOCOLS`, one preset per paper (plain data, no torch).
* :mod:`.protocols` — :func:`evaluate_protocol`, :func:`shuffled_control`, :func:`metric_keys`.
* :mod:`.steps` — the Snakemake stages (evaluate one reconstruction file, aggregate).

Import the sub-module you need; this package imports nothing heavy on its own, so the Snakefile
can read the presets without loading torch.
"""
