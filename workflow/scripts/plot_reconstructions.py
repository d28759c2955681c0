"""Adapter for rule plot_reconstructions: a grid of seen images and each method's reconstructions."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.runner import run_step  # noqa: E402
from fmrirecon.report.figures import plot_reconstructions  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    plot_reconstructions,
    images=snakemake.input.images,  # noqa: F821
    recons=list(snakemake.input.recons),  # noqa: F821
    n_images=snakemake.params.n_images,  # noqa: F821
    output=snakemake.output[0],  # noqa: F821
)
