"""Adapter for rule train_category_classifier (paper 004): see fmrirecon.methods.pix2pix.classifier."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.pix2pix.classifier import train_category_classifier  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    train_category_classifier,
    data=smk.input.data,
    images=smk.input.images,
    truth=smk.params.truth,
    metrics=smk.output.metrics,
    scores=smk.output.scores,
    **training_kwargs(smk),
)
