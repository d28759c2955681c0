"""Adapter for rule plot_method_groups: ablation and ROI charts of the trained method families."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.runner import run_step  # noqa: E402
from fmrirecon.report.figures import plot_method_groups  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    plot_method_groups,
    table=snakemake.input[0],  # noqa: F821
    groups=snakemake.params.groups,  # noqa: F821
    rois=snakemake.params.rois,  # noqa: F821
    output=snakemake.output[0],  # noqa: F821
)
