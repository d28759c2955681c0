"""Adapter for rule reconstruct_cad (paper 001, CAD): see fmrirecon.methods.cad.ldm.reconstruct_cad."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.config import job_training  # noqa: E402
from fmrirecon.methods.cad.ldm import reconstruct_cad  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    reconstruct_cad,
    data=smk.input.data,
    images=smk.input.images,
    ldm_folder=smk.params.ldm_folder,
    model=smk.input.model,
    settings=smk.params.settings,
    training=job_training(smk.config, smk.params.precision),
    seed=smk.params.seed,
    method=smk.wildcards.method,
    recon=smk.output.recon,
)
