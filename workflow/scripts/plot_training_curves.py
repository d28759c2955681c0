"""Adapter for rule plot_training_curves: one family's loss curves."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.report.figures import plot_training_curves  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, plot_training_curves, logs=list(smk.input), family=smk.wildcards.family, output=smk.output[0])
