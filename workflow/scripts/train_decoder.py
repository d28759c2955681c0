"""Adapter for rule train_decoder (papers 002 and 000: the decoders): see fmrirecon.methods.encdec.decoder."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.encdec.decoder import train_decoder  # noqa: E402
from fmrirecon.runner import run_step, training_kwargs  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    train_decoder,
    method=smk.wildcards.method,
    family=smk.params.family,
    data=smk.input.data,
    images=smk.input.images,
    encoder=smk.input.encoder,
    attention=smk.input.get("attention", ""),
    **training_kwargs(smk),
)
