# fmrirecon: reconstruct seen images from fMRI, reproducibly. The table of contents of the DAG.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))  # the fmrirecon package


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


from fmrirecon.config import validate_config  # noqa: E402
from fmrirecon.errors import InputError  # noqa: E402

try:
    validate_config(config)
except InputError as exc:
    raise WorkflowError(str(exc)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/encdec_common.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/encoders.smk"
include: "workflow/rules/decoders.smk"
include: "workflow/rules/ldm.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_all_targets(),
    localrule: True
