"""Adapter for rule mask_roi: select one ROI of one subject, normalise, average test repeats."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.runner import run_step  # noqa: E402
from fmrirecon.data.steps import mask_roi  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    mask_roi,
    source=snakemake.params.source,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    subject=snakemake.wildcards.subject,  # noqa: F821
    roi=snakemake.wildcards.roi,  # noqa: F821
    composites=snakemake.params.composites,  # noqa: F821
    normalization=snakemake.params.normalization,  # noqa: F821
    roi_source=snakemake.params.roi_source,  # noqa: F821
    output=snakemake.output[0],  # noqa: F821
    dataset=snakemake.wildcards.dataset,  # noqa: F821
    config_hash=snakemake.params.config_hash,  # noqa: F821
)
