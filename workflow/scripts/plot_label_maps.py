"""Adapter for rule plot_label_maps: test images, their label maps and the true foreground."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.report.figures import plot_label_map_file  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    plot_label_map_file,
    images=snakemake.input.images,  # noqa: F821
    maps=snakemake.input.maps,  # noqa: F821
    summary=snakemake.input.summary,  # noqa: F821
    output=snakemake.output.figure,  # noqa: F821
)
