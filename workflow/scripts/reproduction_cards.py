"""Adapter for rule reproduction_cards: one paper's published results beside ours, claims tested."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.report.cards import write_reproduction_card  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    write_reproduction_card,
    paper_id=smk.wildcards.paper,
    table=smk.input.table,
    metrics=list(smk.input.metrics),
    datasets=smk.params.datasets,
    method_settings=smk.params.method_settings,
    image_size=smk.params.image_size,
    output=smk.output[0],
)
