"""Adapter for rule train_decoder: the decoders of papers 002 (ssl) and 000 (loopencdec)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cli import run_step  # noqa: E402
from fmrirecon.encdec.steps import train_decoder  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    train_decoder,
    method=snakemake.wildcards.method,  # noqa: F821
    family=snakemake.params.family,  # noqa: F821
    data=snakemake.input.data,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    encoder=snakemake.input.encoder,  # noqa: F821
    attention=snakemake.input.get("attention", ""),  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    checkpoint=snakemake.params.checkpoint,  # noqa: F821
    model=snakemake.output.model,  # noqa: F821
    losses=snakemake.output.losses,  # noqa: F821
)
