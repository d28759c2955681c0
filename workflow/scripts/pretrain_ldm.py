"""Adapter for rule pretrain_ldm (paper 001, CAD): see fmrirecon.methods.cad.ldm.pretrain_ldm."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.cad.ldm import pretrain_ldm  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    pretrain_ldm,
    images=smk.input.images,
    autoencoder=smk.input.autoencoder,
    **training_kwargs(smk),
)
