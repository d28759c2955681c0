"""Adapter for rule train_latent_regressor (paper 003): see fmrirecon.methods.latentreg.regress."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.latentreg.regress import train_latent_regressor  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    train_latent_regressor,
    data=smk.input.data,
    images=smk.input.images,
    autoencoder=smk.params.first_stage,
    text=smk.input.text,
    branch=smk.wildcards.branch,
    predictions=smk.output.predictions,
    **training_kwargs(smk),
)
