"""Adapter for rule make_label_maps: foreground-attention label maps (paper 000)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.encdec.attention import make_label_maps  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

run_step(
    snakemake,  # noqa: F821
    make_label_maps,
    images=snakemake.input.images,  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    maps=snakemake.output.maps,  # noqa: F821
    summary=snakemake.output.summary,  # noqa: F821
)
