"""Adapter for rule train_attention_decoder: fMRI -> F-attention map (paper 000)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.encdec.attention import train_attention_decoder  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    train_attention_decoder,
    data=smk.input.data,
    images=smk.input.images,
    maps=smk.input.maps,
    summary=smk.output.summary,
    **training_kwargs(smk),
)
