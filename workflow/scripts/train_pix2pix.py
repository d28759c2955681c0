"""Adapter for rule train_pix2pix (paper 004): see fmrirecon.methods.pix2pix.gan."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.pix2pix.gan import train_pix2pix  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    train_pix2pix,
    method=smk.wildcards.method,
    data=smk.input.data,
    images=smk.input.images,
    **training_kwargs(smk),
)
