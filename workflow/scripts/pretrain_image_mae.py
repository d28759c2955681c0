"""Adapter for rule pretrain_image_mae (paper 001, CAD): see fmrirecon.methods.cad.mae.pretrain_image_mae."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.cad.mae import pretrain_image_mae  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, pretrain_image_mae, images=smk.input.images, **training_kwargs(smk))
