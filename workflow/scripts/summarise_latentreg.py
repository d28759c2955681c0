"""Adapter for rule summarise_latentreg: paper 003's Table 3 (latent MSE) on our data."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.latentreg.tables import summarise_latentreg  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    summarise_latentreg,
    predictions={path: smk.params.methods[path] for path in smk.input},
    output=smk.output[0],
    seed=smk.params.seed,
    n_boot=smk.params.n_boot,
)
