"""Adapter for rule plot_metrics: one protocol's metrics per method with CIs, chance and controls."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.runner import run_step  # noqa: E402
from fmrirecon.report.figures import plot_metrics  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, plot_metrics, table=smk.input[0], protocol=smk.wildcards.protocol, output=smk.output[0])
