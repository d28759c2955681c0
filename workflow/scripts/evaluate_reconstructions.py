"""Adapter for rule evaluate_reconstructions: score one recon.h5 with every protocol of its method."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.evaluate.steps import evaluate_reconstructions  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
w = smk.wildcards
run_step(
    smk,
    evaluate_reconstructions,
    recon=smk.input.recon,
    images=smk.input.images,
    truth_features=smk.input.truth_features,
    protocols=smk.params.protocols,
    seed=smk.params.seed,
    evaluation={
        "bootstrap_samples": smk.params.bootstrap_samples,
        "shuffled_control": smk.params.shuffled_control,
        "weights_dir": smk.params.weights_dir,
    },
    output=smk.output[0],
    context={"dataset": w.dataset, "subject": w.subject, "roi": w.roi, "method": w.method},
)
