"""Adapter for rule simulate_dataset: generate the simulated GOD-like dataset."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.data.simulation.dataset import simulate_dataset  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    simulate_dataset,
    cfg=snakemake.params.simulation,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    subjects=snakemake.params.subjects,  # noqa: F821
    outdir=snakemake.output[0],  # noqa: F821
)
