"""Evaluation: metrics, statistics and per-paper protocols.

* :mod:`.ssim` — batched torch SSIM matching scikit-image, pairwise SSIM matrices
  (:mod:`.ssim_core` settings and arithmetic, :mod:`.ssim_backends` the pairwise backends,
  :mod:`.ssim_native` the C kernel ``ssim_kernel.c``, built and cached safely).
* :mod:`.metrics` — PixCorr, n-way identification, pairwise-SSIM 2-way, n-way top-k semantic
  accuracy, class-centroid classification, feature correlation and perceptual distances.
* :mod:`.stats` — bootstrap CIs over images, paired Wilcoxon tests.
* :mod:`.features` — the evaluation's view of the network registry of :mod:`fmrirecon.features`
  (EfficientNet-Lite0 offline; others from local files) and the perceptual layers.
* :mod:`.presets` — :data:`DEFAULT_PROTOCOLS`, one preset per paper (plain data, no torch).
* :mod:`.protocols` — :func:`evaluate_protocol` (specs in :mod:`.protocol_spec`, shared state in
  :mod:`.protocol_context`, one function per metric kind in :mod:`.protocol_metrics`).
* :mod:`.steps` — the Snakemake stages (evaluate one reconstruction file, aggregate).

Import the sub-module you need; this package imports nothing heavy on its own, so the Snakefile
can read the presets without loading torch.
"""
