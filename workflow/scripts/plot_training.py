"""Adapter for rule plot_training: the table of the training stages."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.report.training import training_report  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    training_report,
    summaries=list(smk.input.summaries),
    accuracy=list(smk.input.get("accuracy", [])),
    attention=list(smk.input.get("attention", [])),
    labels=list(smk.input.get("labels", [])),
    summary=smk.output.summary,
)
