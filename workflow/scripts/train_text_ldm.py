"""Adapter for rule train_text_ldm (paper 003's generator stand-in): see fmrirecon.methods.latentreg.generator."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.latentreg.generator import train_text_ldm  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    train_text_ldm,
    images=smk.input.images,
    autoencoder=smk.input.autoencoder,
    text=smk.input.text,
    **training_kwargs(smk),
)
