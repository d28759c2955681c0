"""Adapter for rule train_autoencoder (paper 001, CAD): see fmrirecon.cad.train_autoencoder."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cad import train_autoencoder  # noqa: E402
from fmrirecon.cli import run_step  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    train_autoencoder,
    images=snakemake.input.images,  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    checkpoint_dir=snakemake.params.checkpoint_dir,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    output=snakemake.output.model,  # noqa: F821
    loss_log=snakemake.output.losses,  # noqa: F821
)
