"""Adapter for rule reconstruct_decoder: test reconstructions of the ssl / loopencdec decoders."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cli import run_step  # noqa: E402
from fmrirecon.encdec.steps import reconstruct_decoder  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    reconstruct_decoder,
    method=snakemake.wildcards.method,  # noqa: F821
    family=snakemake.params.family,  # noqa: F821
    data=snakemake.input.data,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    decoder=snakemake.input.decoder,  # noqa: F821
    attention=snakemake.input.get("attention", ""),  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    output=snakemake.output[0],  # noqa: F821
)
