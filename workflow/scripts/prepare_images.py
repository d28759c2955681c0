"""Adapter for rule prepare_images: a dataset's images once, uint8 NHWC with their ids."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.runner import run_step  # noqa: E402
from fmrirecon.data.steps import prepare_images  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    prepare_images,
    source=snakemake.params.source,  # noqa: F821
    image_size=snakemake.params.image_size,  # noqa: F821
    output=snakemake.output[0],  # noqa: F821
    config_hash=snakemake.params.config_hash,  # noqa: F821
)
