"""Adapter for rule reconstruct_pix2pix: test reconstructions of a pix2pix generator."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.config import job_training  # noqa: E402
from fmrirecon.methods.pix2pix.gan import reconstruct_pix2pix  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    reconstruct_pix2pix,
    method=smk.wildcards.method,
    data=smk.input.data,
    images=smk.input.images,
    model=smk.input.model,
    training=job_training(smk.config, smk.params.precision),
    seed=smk.params.seed,
    recon=smk.output.recon,
)
