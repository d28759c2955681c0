"""Adapter for rule train_ldm (paper 001, CAD): see fmrirecon.cad.train_ldm."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.cad import train_ldm  # noqa: E402
from fmrirecon.cli import run_step  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    train_ldm,
    data=snakemake.input.data,  # noqa: F821
    images=snakemake.input.images,  # noqa: F821
    ldm_folder=snakemake.params.ldm_folder,  # noqa: F821
    fmri_encoder=snakemake.input.fmri_encoder,  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    checkpoint_dir=snakemake.params.checkpoint_dir,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    output=snakemake.output.model,  # noqa: F821
    loss_log=snakemake.output.losses,  # noqa: F821
)
