# fmrirecon: reconstruct seen images from fMRI, reproducibly. The table of contents of the DAG.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))  # the fmrirecon package


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


from fmrirecon.config import check_config_files, validate_config  # noqa: E402
from fmrirecon.errors import InputError  # noqa: E402
from fmrirecon.methods import rules_files  # noqa: E402

try:
    check_config_files(workflow.configfiles)
    validate_config(config)
except InputError as exc:
    raise WorkflowError(str(exc)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


# one rules file per method family plugin (fmrirecon.methods.PLUGINS)
for family_rules in rules_files():

    include: family_rules


include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_all_targets(),
    localrule: True
