"""Adapter for rule plot_training: loss curves and the encoder / attention-decoder summary table."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cli import run_step  # noqa: E402
from fmrirecon.report.training import training_report  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    training_report,
    logs=list(snakemake.input.logs),  # noqa: F821
    accuracy=list(snakemake.input.accuracy),  # noqa: F821
    attention=list(snakemake.input.attention),  # noqa: F821
    labels=list(snakemake.input.labels),  # noqa: F821
    curves=snakemake.output.curves,  # noqa: F821
    summary=snakemake.output.summary,  # noqa: F821
)
