"""Adapter for rule pretrain_encoder: the image -> fMRI encoder (papers 002, 000)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.encdec.encoder import pretrain_encoder  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    pretrain_encoder,
    data=smk.input.data,
    images=smk.input.images,
    accuracy=smk.output.accuracy,
    **training_kwargs(smk),
)
