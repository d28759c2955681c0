"""Adapter for rule train_autoencoder (paper 001, CAD): see fmrirecon.methods.cad.ldm.train_autoencoder."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.cad.ldm import train_autoencoder  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, train_autoencoder, images=smk.input.images, **training_kwargs(smk))
