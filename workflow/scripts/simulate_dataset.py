"""Adapter for rule simulate_dataset: generate the simulated GOD-like dataset."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cli import run_step  # noqa: E402
from fmrirecon.data.steps import run_simulation  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    run_simulation,
    simulation=snakemake.params.simulation,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    subjects=snakemake.params.subjects,  # noqa: F821
    outdir=snakemake.output[0],  # noqa: F821
)
