"""Adapter for rule caption_tokens (paper 003): see fmrirecon.methods.latentreg.text."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.methods.latentreg.text import caption_tokens  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(smk, caption_tokens, images=smk.input.images, truth=smk.params.truth, output=smk.output.text,
         pretrained=smk.params.pretrained)
