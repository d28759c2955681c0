"""Adapter for rule pretrain_encoder: the image -> fMRI encoder (papers 002, 000)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cli import run_step  # noqa: E402
from fmrirecon.encdec.steps import pretrain_encoder  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    pretrain_encoder,
    data=snakemake.input.data,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    checkpoint=snakemake.params.checkpoint,  # noqa: F821
    model=snakemake.output.model,  # noqa: F821
    losses=snakemake.output.losses,  # noqa: F821
    accuracy=snakemake.output.accuracy,  # noqa: F821
)
