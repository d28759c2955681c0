"""Adapter for rule reconstruct_decoder: test reconstructions of the ssl / loopencdec decoders."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.config import job_training  # noqa: E402
from fmrirecon.methods.encdec.decoder import reconstruct_decoder  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    reconstruct_decoder,
    method=smk.wildcards.method,
    data=smk.input.data,
    images=smk.input.images,
    decoder=smk.input.decoder,
    attention=smk.input.get("attention", ""),
    training=job_training(smk.config, smk.params.precision),
    seed=smk.params.seed,
    recon=smk.output.recon,
)
