"""Adapter for rule truth_features: the ground-truth features every evaluation of a dataset shares."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.evaluate.truth_cache import truth_features  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    truth_features,
    images=smk.input.images,
    plan=smk.params.plan,
    output=smk.output[0],
    dataset_classifier=smk.params.dataset_classifier,
)
