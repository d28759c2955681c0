"""Adapter for rule tune_cross_modal (paper 001, CAD): see fmrirecon.methods.cad.mae.tune_cross_modal."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.cad.mae import tune_cross_modal  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    tune_cross_modal,
    data=smk.input.data,
    images=smk.input.images,
    fmri_mae=smk.input.fmri_mae,
    image_mae=smk.input.image_mae,
    **training_kwargs(smk),
)
