"""Adapter for rule simulate_pool: an HCP-like pool in the HCP npz layout (fmrirecon.data.simulation.hcp_pool)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.data.simulation.hcp_pool import simulate_pool  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, simulate_pool, name=smk.wildcards.pool, settings=smk.params.pool["simulation"],
         subjects=smk.params.pool["subjects"], rois=smk.params.pool["rois"], seed=smk.params.seed,
         outdir=smk.output[0])  # fmt: skip
