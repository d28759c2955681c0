"""Adapter for rule plot_metrics: bar charts of every metric with CIs, chance and controls."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.runner import run_step  # noqa: E402
from fmrirecon.report.figures import plot_metrics  # noqa: E402

run_step(snakemake, plot_metrics, table=snakemake.input[0], output=snakemake.output[0])  # noqa: F821
