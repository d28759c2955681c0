"""Adapter for rule train_ldm (paper 001, CAD): see fmrirecon.methods.cad.ldm.train_ldm."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.cad.ldm import train_ldm  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    train_ldm,
    data=smk.input.data,
    images=smk.input.images,
    ldm_folder=smk.params.ldm_folder,
    fmri_encoder=smk.input.fmri_encoder,
    **training_kwargs(smk),
)
