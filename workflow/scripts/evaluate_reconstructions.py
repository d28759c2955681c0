"""Adapter for rule evaluate_reconstructions: score one recon.h5 with one protocol preset."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cli import run_step  # noqa: E402
from fmrirecon.evaluate.steps import evaluate_reconstructions  # noqa: E402

w = snakemake.wildcards  # noqa: F821
run_step(
    snakemake,  # noqa: F821
    evaluate_reconstructions,
    recon=snakemake.input.recon,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    protocol_name=w.protocol,
    protocol=snakemake.params.protocol,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    evaluation=snakemake.params.evaluation,  # noqa: F821
    output=snakemake.output[0],  # noqa: F821
    context={"dataset": w.dataset, "subject": w.subject, "roi": w.roi, "method": w.method},
)
