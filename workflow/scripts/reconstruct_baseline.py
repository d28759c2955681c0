"""Adapter for rule reconstruct_baseline: the reference decoder and the control reconstructions."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.baselines.steps import reconstruct_baseline  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    reconstruct_baseline,
    data=snakemake.input.data,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    method=snakemake.wildcards.method,  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    truth=snakemake.params.truth,  # noqa: F821
    recon=snakemake.output.recon,  # noqa: F821
)
