"""Adapter for rule summarise_category_classifier: every classifier's metrics as one table."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.pix2pix.figures import summarise_category_classifier  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, summarise_category_classifier, metrics=list(smk.input), output=smk.output[0])
