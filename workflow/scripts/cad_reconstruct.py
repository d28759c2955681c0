"""Adapter for rule reconstruct_cad (paper 001, CAD): see fmrirecon.cad.reconstruct_cad."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cad import reconstruct_cad  # noqa: E402
from fmrirecon.cli import run_step  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    reconstruct_cad,
    data=snakemake.input.data,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    ldm_folder=snakemake.params.ldm_folder,  # noqa: F821
    model=snakemake.input.model,  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    method=snakemake.wildcards.method,  # noqa: F821
    output=snakemake.output[0],  # noqa: F821
)
