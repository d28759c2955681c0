"""Adapter for rule prepare_pool: read a pretraining pool and write results/pools/<pool>/pool.h5."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.data.pools import build_pool  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, build_pool, source=smk.params.source, output=smk.output[0], config_hash=smk.params.config_hash)
