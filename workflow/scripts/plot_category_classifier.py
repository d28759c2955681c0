"""Adapter for rule plot_category_classifier: the classifier's report figure of one unit."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.pix2pix.figures import plot_category_classifier  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, plot_category_classifier, metrics=smk.input.metrics, scores=smk.input.scores, output=smk.output[0])
