"""Adapter for rule reconstruct_latentreg: img2img from the predicted latents (paper 003)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.config import job_training  # noqa: E402
from fmrirecon.methods.latentreg.generator import reconstruct_latentreg  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    reconstruct_latentreg,
    data=smk.input.data,
    images=smk.input.images,
    ldm_folder=smk.params.ldm_folder,
    text=smk.input.text,
    predictions={b: smk.input[f"{b}_predictions"] for b in ("z", "c")} if "z_predictions" in smk.input.keys() else {},
    settings=smk.params.settings,
    training=job_training(smk.config, smk.params.precision),
    seed=smk.params.seed,
    method=smk.wildcards.method,
    recon=smk.output.recon,
)
