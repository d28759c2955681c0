"""Adapter for rule pretrain_fmri_mae_pool (paper 001, CAD): see fmrirecon.methods.cad.mae.pretrain_fmri_mae_pool."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.cad.mae import pretrain_fmri_mae_pool  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, pretrain_fmri_mae_pool, pool=smk.input.pool, **training_kwargs(smk))
