"""fmrirecon: reconstruct seen images from fMRI, reproducibly.

The package holds all logic; the Snakemake scripts in ``workflow/scripts`` are thin adapters.
Sub-packages are split by concern: ``data`` (readers, simulator, ROI masking), ``features``
(pretrained backbones), ``evaluate`` (metrics and protocol presets), ``report`` (figures).
"""

__version__ = "0.1.0"
