"""Adapter for rule report_summary: the report's first page from the reproduction cards."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821  (the fmrirecon package)
from fmrirecon.report.summary import write_summary  # noqa: E402
from fmrirecon.runner import run_step  # noqa: E402

smk = snakemake  # noqa: F821
run_step(
    smk,
    write_summary,
    cards=list(smk.input.cards),
    intro=(Path(smk.scriptdir).parent / "report" / "workflow.rst").read_text(encoding="utf-8"),
    rst=smk.output.rst,
    metadata=smk.output.metadata,
)
