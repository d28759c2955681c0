"""Adapter for rule data_card: one dataset's data card (split sizes, repeats, voxels, sessions)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.report.data_card import write_data_card  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    write_data_card,
    images=smk.input.images,
    subjects=list(smk.input.subjects),
    dataset=smk.wildcards.dataset,
    data_format=smk.params.format,
    output=smk.output[0],
)
