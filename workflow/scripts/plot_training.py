"""Adapter for rule plot_training: loss curves and the table of the training stages."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.report.training import training_report  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    training_report,
    logs=list(smk.input.logs),
    summaries=list(smk.input.summaries),
    accuracy=list(smk.input.get("accuracy", [])),
    attention=list(smk.input.get("attention", [])),
    labels=list(smk.input.get("labels", [])),
    curves=smk.output.curves,
    summary=smk.output.summary,
)
