"""Adapter for rule aggregate_metrics: results/metrics.csv and paired method comparisons."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.runner import run_step  # noqa: E402
from fmrirecon.evaluate.steps import aggregate_metrics  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    aggregate_metrics,
    inputs=list(snakemake.input),  # noqa: F821
    table=snakemake.output.table,  # noqa: F821
    comparisons=snakemake.output.comparisons,  # noqa: F821
    unavailable=snakemake.output.unavailable,  # noqa: F821
)
